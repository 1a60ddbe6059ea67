"""The terminal progress bar: step, loss, tokens/s and tqdm's ETA."""

from __future__ import annotations

from typing import Any


class Bar:
    """A tqdm bar over optimizer steps (written to stderr, so stdout stays parseable)."""

    def __init__(self, total: int, start: int = 0) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True,
                         desc="train")
        self._step = start

    def update(self, step: int, total: int, metrics: dict[str, Any]) -> None:
        """Advance to ``step`` and show the latest loss and throughput."""
        postfix = {"loss": f"{metrics.get('loss', float('nan')):.4f}",
                   "tok/s": f"{metrics.get('tokens_per_s', 0.0):.0f}"}
        if "eval_loss" in metrics:
            postfix["eval"] = f"{metrics['eval_loss']:.4f}"
        if "rewards/margin" in metrics:
            postfix["margin"] = f"{metrics['rewards/margin']:.3f}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(step - self._step)
        self._step = step

    def close(self) -> None:
        """Finish the bar's line."""
        self._bar.close()
