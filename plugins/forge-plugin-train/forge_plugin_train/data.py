"""Tokenized training data: split, per-epoch seeded order, packing, streaming and batching.

The order of examples is a pure function of ``(seed, epoch)``, so a resumed run re-creates it and
skips what the checkpoint says was consumed: bit-for-bit resume needs no saved data state beyond
two integers. Files over ``STREAM_BYTES`` (or ``data.streaming: true``) are never held in memory:
each epoch re-reads them line by line and shuffles through a seeded buffer.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from forge_plugin_train.records import (
    ChatFormat,
    DataError,
    detect_format,
    iter_records,
    preference,
    segments,
)
from forge_plugin_train.spec import RunSpec

STREAM_BYTES = 256 << 20
IGNORE = -100


def file_hash(path: str | Path) -> str:
    """``sha256:<hex>`` of a data file (streamed), recorded with each run."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _is_eval(seed: int, index: int, fraction: float) -> bool:
    h = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64 < fraction


class TrainData:
    """One split (``train`` or ``eval``) of a run's data, tokenized for ``spec.method``."""

    def __init__(self, spec: RunSpec, tokenizer: Any, split: str = "train") -> None:
        self.spec, self.tokenizer, self.split = spec, tokenizer, split
        self.dpo = spec.method == "dpo"
        self.path = Path(spec.data.eval_path if split == "eval" and spec.data.eval_path
                         else spec.data.path)
        self.fraction = 0.0 if spec.data.eval_path else spec.data.eval_fraction
        self.chat = ChatFormat(tokenizer)
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        mode = spec.data.streaming
        self.streaming = (mode == "true" or (mode == "auto" and self.path.is_file()
                                             and self.path.stat().st_size > STREAM_BYTES))
        self._cached: list[dict[str, Any]] | None = None
        self._count: int | None = None
        if not self.streaming:
            self._cached = list(self._read())
            if not self._cached and (split == "train" or self.fraction or spec.data.eval_path):
                raise DataError(f"{self.path}: no usable {split} records "
                                f"(empty file, or every record was cut to no trained tokens)")

    # ---- reading -------------------------------------------------------------------------

    def _selected(self, index: int) -> bool:
        if not self.fraction:
            return True
        return _is_eval(self.spec.seed, index, self.fraction) == (self.split == "eval")

    def _read(self) -> Iterator[dict[str, Any]]:
        fmt = self.spec.data.format
        for index, (line, record) in enumerate(iter_records(self.path)):
            if not self._selected(index):
                continue
            where = f"{self.path}:{line}"
            kind = detect_format(record, where) if fmt == "auto" else fmt
            if self.dpo != (kind == "preference"):
                raise DataError(f"{where}: a {kind} record, but method "
                                f"{self.spec.method!r} needs "
                                f"{'prompt/chosen/rejected' if self.dpo else 'SFT'} records")
            example = self._pair(record, where) if self.dpo else self._sft(record, kind, where)
            if example is not None:
                yield example

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _sft(self, record: dict[str, Any], kind: str, where: str) -> dict[str, Any] | None:
        ids, labels = list(self.bos), [IGNORE] * len(self.bos)
        for text, trained in segments(record, kind, where, self.chat, self.spec.data.mask_prompt):
            piece = self._ids(text)
            ids += piece
            labels += piece if trained else [IGNORE] * len(piece)
        if kind != "messages" and self.eos:  # the chat format's own end marker is trained
            ids += self.eos
            labels += self.eos
        limit = self.spec.data.max_length
        ids, labels = ids[:limit], labels[:limit]
        if all(label == IGNORE for label in labels[1:]):
            return None  # nothing left to learn from after truncation
        return {"input_ids": ids, "labels": labels}

    def _pair(self, record: dict[str, Any], where: str) -> dict[str, Any] | None:
        need_ref = self.spec.dpo.reference == "precomputed"
        pair = preference(record, where, self.chat, need_ref)
        prompt = self.bos + self._ids(pair["prompt"])
        limit = self.spec.data.max_length
        if len(prompt) >= limit:
            return None
        out = {"prompt_ids": prompt,
               "chosen_ids": (self._ids(pair["chosen"]) + self.eos)[:limit - len(prompt)],
               "rejected_ids": (self._ids(pair["rejected"]) + self.eos)[:limit - len(prompt)]}
        if need_ref:
            out["ref_chosen_logp"] = pair["ref_chosen_logp"]
            out["ref_rejected_logp"] = pair["ref_rejected_logp"]
        return out

    # ---- ordering ------------------------------------------------------------------------

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        """Examples of one epoch in their seeded order (packed rows when ``data.packing``)."""
        seed = self.spec.seed * 1_000_003 + epoch
        if self._cached is not None:
            generator = torch.Generator().manual_seed(seed)
            order = (torch.randperm(len(self._cached), generator=generator).tolist()
                     if self.spec.data.shuffle and self.split == "train"
                     else range(len(self._cached)))
            stream: Iterator[dict[str, Any]] = (self._cached[i] for i in order)
        else:
            stream = self._read()
            if self.spec.data.shuffle and self.split == "train":
                stream = _buffer_shuffle(stream, self.spec.data.shuffle_buffer, random.Random(seed))
        if self.spec.data.packing and not self.dpo:
            stream = _pack(stream, self.spec.data.max_length)
        return stream

    def __len__(self) -> int:
        """Examples (packed rows) per epoch; streamed files are counted in one pass."""
        if self._count is None:
            self._count = sum(1 for _ in self.epoch(0))
        return self._count

    # ---- batching ------------------------------------------------------------------------

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-padded tensors: SFT ``input_ids/attention_mask/labels``; DPO the chosen rows
        then the rejected rows with a ``completion_mask`` (TRL's layout)."""
        if self.dpo:
            rows = [e["prompt_ids"] + e["chosen_ids"] for e in examples]
            rows += [e["prompt_ids"] + e["rejected_ids"] for e in examples]
            masks = [[0] * len(e["prompt_ids"]) + [1] * len(e[k])
                     for k in ("chosen_ids", "rejected_ids") for e in examples]
            batch = _pad(rows, self.pad_id)
            batch["completion_mask"] = _pad(masks, 0)["input_ids"]
            if "ref_chosen_logp" in examples[0]:
                batch["ref_chosen_logps"] = torch.tensor([e["ref_chosen_logp"] for e in examples])
                batch["ref_rejected_logps"] = torch.tensor(
                    [e["ref_rejected_logp"] for e in examples])
            return batch
        batch = _pad([e["input_ids"] for e in examples], self.pad_id)
        batch["labels"] = _pad([e["labels"] for e in examples], IGNORE)["input_ids"]
        return batch


def _pad(rows: list[list[int]], value: int) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _buffer_shuffle(stream: Iterator[Any], size: int, rng: random.Random) -> Iterator[Any]:
    buffer: list[Any] = []
    for item in stream:
        buffer.append(item)
        if len(buffer) >= size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def _pack(stream: Iterator[dict[str, Any]], length: int) -> Iterator[dict[str, Any]]:
    """Concatenate examples into rows of exactly ``length`` tokens; the tail is dropped."""
    ids: list[int] = []
    labels: list[int] = []
    for example in stream:
        ids += example["input_ids"]
        labels += example["labels"]
        while len(ids) >= length:
            yield {"input_ids": ids[:length], "labels": labels[:length]}
            ids, labels = ids[length:], labels[length:]
