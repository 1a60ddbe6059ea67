"""Fixtures: a tiny random Gemma 3 with a character tokenizer, small data files, FORGE_HOME."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest


def make_tiny_model(directory: Path, seed: int = 0) -> Path:
    """A 2-layer Gemma 3 text model (~100k parameters) and a character-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    chars = list(string.ascii_letters + string.digits + string.punctuation + " \n")
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    chars_only = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    chars_only.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=chars_only,
        bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    config = Gemma3TextConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                              head_dim=32, max_position_embeddings=512, sliding_window=128,
                              pad_token_id=0, eos_token_id=1, bos_token_id=2)
    torch.manual_seed(seed)
    Gemma3ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "default_model: trains the default Gemma 3 270M "
                            "(minutes on 2 cores; run in CI, deselect with -m 'not default_model')")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(autouse=True)
def forge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "forge-home"
    monkeypatch.setenv("FORGE_HOME", str(home))
    return home


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture()
def sft_file(tmp_path: Path) -> Path:
    records = [{"prompt": f"Q{i}: add {i} and {i}?", "completion": f" {2 * i}"}
               for i in range(24)]
    return write_jsonl(tmp_path / "sft.jsonl", records)


@pytest.fixture()
def dpo_file(tmp_path: Path) -> Path:
    records = [{"prompt": f"Say {w}:", "chosen": f" {w}!", "rejected": f" no {w[::-1]}"}
               for w in ("cat", "dog", "sun", "map", "key", "box", "cup", "pen")]
    return write_jsonl(tmp_path / "dpo.jsonl", records)
