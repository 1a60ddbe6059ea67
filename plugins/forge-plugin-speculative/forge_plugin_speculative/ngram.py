"""N-gram (prompt lookup) drafts: the tokens that followed the latest earlier occurrence of the
sequence's last ``n`` tokens (``n`` from ``max_n`` down to ``min_n``), in the prompt or the
output so far. Free to compute, and right whenever the answer repeats its context: quoting,
rewriting, code edits, extraction (Saxena 2023, "prompt lookup decoding")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class NgramProposer:
    """Stateless drafter over a sequence's own tokens; its drafts are point masses (``q``
    is ``None`` in verification)."""

    name = "ngram"

    def __init__(self, min_n: int = 1, max_n: int = 3) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError(f"n-gram sizes must satisfy 1 <= min_n <= max_n, got "
                             f"{min_n}..{max_n}")
        self.min_n, self.max_n = min_n, max_n

    def draft(self, token_ids: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens predicted to follow ``token_ids`` (``[]`` when nothing matches)."""
        ids = np.asarray(token_ids, dtype=np.int64)
        for n in range(min(self.max_n, len(ids) - 1), self.min_n - 1, -1):
            # Windows starting before the tail itself; the latest match is the likeliest.
            windows = sliding_window_view(ids[:-1], n)  # [L - n, n]
            hits = np.flatnonzero((windows == ids[-n:]).all(axis=1))
            if len(hits):
                start = int(hits[-1]) + n
                return ids[start:start + k].tolist()
        return []
