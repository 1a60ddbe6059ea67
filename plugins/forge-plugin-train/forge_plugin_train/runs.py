"""Run records under ``$FORGE_HOME/train/runs/<id>``: state, spec snapshot, metrics, artifacts.

Layout of a run directory::

    run.json          state, timestamps, pid, parent model, dataset hash, seed, environment, error
    spec.yaml         the validated run spec (what ``--resume`` re-reads)
    metrics.jsonl     one JSON object per logged step / evaluation
    checkpoints/      step-000010/ ... best/ (see :mod:`forge_plugin_train.checkpoint`)
    final/            the adapter (LoRA) or full weights, plus the tokenizer

States: ``queued -> running <-> checkpointing -> completed | failed | cancelled``. A run whose
recorded process is gone while ``running`` is shown as ``interrupted`` and can be resumed.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge_kernel.config import forge_home
from forge_kernel.errors import ForgeError

STATES = ("queued", "running", "checkpointing", "completed", "failed", "cancelled")
ACTIVE = ("queued", "running", "checkpointing")


class RunNotFound(ForgeError):
    """No run with that id (or name) exists under ``$FORGE_HOME``."""


def runs_root() -> Path:
    """Where run directories live."""
    return forge_home() / "train" / "runs"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(slots=True)
class Run:
    """A handle on one run directory; ``info`` is ``run.json``."""

    id: str
    dir: Path
    info: dict[str, Any]

    @classmethod
    def create(cls, name: str | None, extra: dict[str, Any]) -> Run:
        """A new ``queued`` run with a fresh id (``<utc time>-<random>``)."""
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)
        directory = runs_root() / run_id
        (directory / "checkpoints").mkdir(parents=True)
        run = cls(run_id, directory, {"id": run_id, "name": name, "state": "queued",
                                      "created": time.time(), "step": 0, **extra})
        run.save()
        return run

    @classmethod
    def load(cls, ref: str) -> Run:
        """The run with id ``ref``, a run directory path, or the newest run named ``ref``."""
        path = Path(ref)
        if (path / "run.json").is_file():
            return cls._read(path)
        direct = runs_root() / ref
        if (direct / "run.json").is_file():
            return cls._read(direct)
        named = [run for run in list_runs() if run.info.get("name") == ref]
        if named:
            return named[0]
        raise RunNotFound(f"no training run {ref!r} under {runs_root()} (see `forge runs list`)")

    @classmethod
    def _read(cls, directory: Path) -> Run:
        try:
            info = json.loads((directory / "run.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ForgeError(f"{directory / 'run.json'}: unreadable run record: {exc}") from None
        return cls(info.get("id", directory.name), directory, info)

    def save(self) -> None:
        """Write ``run.json`` atomically (a reader never sees half a file)."""
        tmp = self.dir / f"run.json.tmp{os.getpid()}"
        tmp.write_text(json.dumps(self.info, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.dir / "run.json")

    def set_state(self, state: str, **fields: Any) -> None:
        """Move to ``state`` (one of :data:`STATES`) and persist it with ``fields``."""
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}")
        self.info.update(fields, state=state, updated=time.time())
        if state == "running":
            self.info["pid"] = os.getpid()
        self.save()

    @property
    def state(self) -> str:
        """The recorded state, or ``interrupted`` when an active run's process is gone."""
        state = self.info.get("state", "queued")
        if state in ("running", "checkpointing") and not _alive(self.info.get("pid")):
            return "interrupted"
        return state

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one line to ``metrics.jsonl``."""
        with (self.dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """Every metrics record so far."""
        path = self.dir / "metrics.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]


def list_runs() -> list[Run]:
    """Every run, newest first."""
    root = runs_root()
    if not root.is_dir():
        return []
    runs = [Run._read(d) for d in root.iterdir() if (d / "run.json").is_file()]
    return sorted(runs, key=lambda r: r.info.get("created", 0), reverse=True)


def truncate_metrics(run: Run, step: int) -> None:
    """Drop metrics logged after ``step`` (a resumed run re-does those steps)."""
    kept = [r for r in run.metrics() if r.get("step", 0) <= step]
    path = run.dir / "metrics.jsonl"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, path)
