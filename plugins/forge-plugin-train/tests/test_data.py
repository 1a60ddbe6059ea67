"""Data formats, prompt masking, packing, split, streaming and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl
from forge_plugin_train.data import IGNORE, TrainData
from forge_plugin_train.modeling import load_tokenizer
from forge_plugin_train.records import DataError
from forge_plugin_train.spec import RunSpec


@pytest.fixture(scope="module")
def tok(tiny_model: Path):
    return load_tokenizer(tiny_model)


def _data(tok, path: Path, split: str = "train", **data) -> TrainData:
    spec = RunSpec.from_dict({"data": {"path": str(path), "shuffle": False, **data}})
    return TrainData(spec, tok, split)


def _trained_text(tok, example: dict) -> str:
    return tok.decode([t for t, lab in zip(example["input_ids"], example["labels"], strict=True)
                       if lab != IGNORE])


@pytest.mark.parametrize(("record", "trained"), [
    ({"prompt": "Hi ", "completion": "there"}, "there<eos>"),
    ({"text": "all of it"}, "all of it<eos>"),
    ({"instruction": "Add", "input": "1 1", "output": "2"}, "2<eos>"),
    ({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                   {"role": "assistant", "content": "A1"}, {"role": "user", "content": "V"},
                   {"role": "assistant", "content": "A2"}]}, "A1<eos>A2<eos>"),
])
def test_formats_mask_the_prompt(tok, tmp_path: Path, record: dict, trained: str) -> None:
    data = _data(tok, write_jsonl(tmp_path / "d.jsonl", [record]))
    (example,) = list(data.epoch(0))
    assert example["input_ids"][0] == tok.bos_token_id
    assert _trained_text(tok, example) == trained
    unmasked = _data(tok, tmp_path / "d.jsonl", mask_prompt=False)
    assert all(lab != IGNORE for lab in next(unmasked.epoch(0))["labels"][1:])


def test_json_and_txt_files(tok, tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text(json.dumps({"data": [{"prompt": "a", "completion": "b"}]}))
    assert len(_data(tok, tmp_path / "d.json")) == 1
    (tmp_path / "d.txt").write_text("line one\n\nline two\n")
    assert [_trained_text(tok, e) for e in _data(tok, tmp_path / "d.txt").epoch(0)] == \
        ["line one<eos>", "line two<eos>"]


def test_packing_truncation_and_split(tok, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "abcdefghij"} for _ in range(40)])
    packed = list(_data(tok, path, packing=True, max_length=16).epoch(0))
    assert packed and all(len(e["input_ids"]) == 16 for e in packed)
    assert len(packed) == (40 * 12) // 16  # bos + 10 chars + eos per record, tail dropped
    short = next(_data(tok, path, max_length=5).epoch(0))
    assert len(short["input_ids"]) == 5
    train = _data(tok, path, eval_fraction=0.25)
    held = _data(tok, path, "eval", eval_fraction=0.25)
    assert len(train) + len(held) == 40 and 3 <= len(held) <= 18


def test_seeded_order_and_streaming(tok, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"r{i}"} for i in range(30)])
    spec = RunSpec.from_dict({"data": {"path": str(path)}, "seed": 3})
    a, b = TrainData(spec, tok), TrainData(spec, tok)
    assert list(a.epoch(1)) == list(b.epoch(1)) != list(a.epoch(2))
    streamed = TrainData(RunSpec.from_dict({"data": {"path": str(path), "streaming": "true",
                                                     "shuffle_buffer": 8}, "seed": 3}), tok)
    assert streamed._cached is None and len(streamed) == 30
    first, again = list(streamed.epoch(0)), list(streamed.epoch(0))
    assert first == again and sorted(map(str, first)) == sorted(map(str, a.epoch(0)))


@pytest.mark.parametrize(("content", "message"), [
    ('{"prompt": "a", "completion": "b"}\n{"prompt": 3, "completion": "b"}\n',
     r"d\.jsonl:2: field 'prompt' must be a string, not int"),
    ('{"prompt": "a", "completion": "b"}\n{oops\n', r"d\.jsonl:2: not valid JSON"),
    ('{"messages": [{"role": "bot", "content": "x"}]}\n',
     r"d\.jsonl:1: field 'messages\[0\]\.role'"),
    ('{"foo": 1}\n', r"d\.jsonl:1: cannot tell the format"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b"}\n', r"d\.jsonl:1: a preference record"),
])
def test_bad_records_name_file_line_field(tok, tmp_path: Path, content: str,
                                          message: str) -> None:
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        _data(tok, tmp_path / "d.jsonl")


def test_preference_batches(tok, dpo_file: Path) -> None:
    spec = RunSpec.from_dict({"data": {"path": str(dpo_file), "shuffle": False}, "method": "dpo"})
    data = TrainData(spec, tok)
    batch = data.collate(list(data.epoch(0))[:2])
    assert batch["input_ids"].shape[0] == 4 and batch["completion_mask"].shape == \
        batch["input_ids"].shape
    first = batch["input_ids"][0][batch["completion_mask"][0].bool()].tolist()
    assert tok.decode(first) == " cat!<eos>"
    with pytest.raises(DataError, match="field 'ref_chosen_logp' must be a number"):
        TrainData(RunSpec.from_dict({**spec.to_dict(), "dpo": {"reference": "precomputed"}}),
                  tok)
