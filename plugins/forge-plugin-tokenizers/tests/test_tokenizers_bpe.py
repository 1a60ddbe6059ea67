"""Byte-level BPE (Llama 3 / Qwen 2 / GPT-2 style): a tiny vocabulary trained here with the
``tokenizers`` trainer, read back as a Hugging Face directory (compared with transformers) and
as GGUF metadata (compared with the directory), both as a plain dict and through a real GGUF
file written with gguf-py."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
from forge_plugin_tokenizers import from_gguf, from_hf_dir, gguf_fields
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from forge_kernel.errors import ModelFormatError

# The split patterns as published in the models' own tokenizer.json files (written out here,
# independently of the plugin's table, so a typo there fails these tests).
PATTERNS = {
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "gpt2": None,  # GPT-2's own regex, as built into tokenizers' ByteLevel pre-tokenizer
}
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<|end_header_id|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2024, we've got 12345 items!",
    "Le café était très bon, n'est-ce pas ? Größenwahn über die Straße.",
    "你好，世界！今天天气很好。日本語のテキストです。Привет, как дела?",
    "def main(args):\n\tfor i in range(10):\n\t\tprint(i  *  2)\n\n    return None\n",
    "emoji 😀👍🏽 and family 👨‍👩‍👧‍👦, hello hello hello world world",
] * 3
SAMPLES = [
    "Hello world! It's the quick fox, they'll say 1234567.",
    "Le café était très bon. Größe! مرحبا नमस्ते 你好世界 Привет",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>",
    "code:\n\tif x  >   1:\n\t\treturn   x\n\n\n   ",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 unseen: ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "", " ", "  leading", "trailing  \n",
]
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
            "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
            "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
            "{% endif %}")


def _train(pre: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if PATTERNS[pre] is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PATTERNS[pre]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    # Llama 3 style: the post-processor adds BOS and tokenizer_config has no add_bos_token
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", tok.token_to_id("<|begin_of_text|>"))])
    return tok


def _hf_dir(root: Path, pre: str) -> Path:
    tok = _train(pre)
    folder = root / pre
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|end_of_text|>", "chat_template": TEMPLATE}))
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [tok.token_to_id("<|end_of_text|>"), tok.token_to_id("<|eot_id|>")]}))
    return folder


def _fields(folder: Path, pre: str) -> dict:
    """GGUF tokenizer metadata as llama.cpp's converter writes it for this vocabulary."""
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    tokens = [None] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.token_type": [3 if t in SPECIALS else 1 for t in tokens],
        "tokenizer.ggml.bos_token_id": vocab["<|begin_of_text|>"],
        "tokenizer.ggml.eos_token_id": vocab["<|end_of_text|>"],
        "tokenizer.ggml.eot_token_id": vocab["<|eot_id|>"],
        "tokenizer.ggml.add_bos_token": True, "tokenizer.chat_template": TEMPLATE,
    }


@pytest.fixture(scope="module", params=list(PATTERNS))
def case(request, tmp_path_factory):
    pre = request.param
    folder = _hf_dir(tmp_path_factory.mktemp("bpe"), pre)
    return pre, folder, from_hf_dir(folder)


def test_hf_dir_matches_transformers(case):
    from transformers import AutoTokenizer

    _, folder, ours = case
    ref = AutoTokenizer.from_pretrained(str(folder))
    for text in SAMPLES:
        assert ours.encode(text) == ref.encode(text), text
        assert ours.encode(text, add_special_tokens=False) == ref.encode(
            text, add_special_tokens=False), text
        ids = ours.encode(text)
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=True), text
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Bye"}]
    assert ours.apply_chat_template(messages) == ref.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True)


def test_hf_dir_special_ids(case):
    _, _, ours = case
    bos, eos, eot = (ours.token_to_id(t) for t in ("<|begin_of_text|>", "<|end_of_text|>",
                                                   "<|eot_id|>"))
    assert ours.add_bos and ours.bos_id == bos  # learned from the post-processor
    assert {eos, eot} <= ours.eos_ids
    assert ours.is_special(eot) and not ours.is_special(ours.encode("Hello", False)[0])
    assert ours.id_to_piece(bos) == "<|begin_of_text|>"
    assert ours.encode("x<|eot_id|>", False)[-1] == eot  # matched whole, not spelled out


def test_gguf_fields_match_hf_dir(case):
    pre, folder, ours = case
    theirs = from_gguf(folder / "model.gguf", _fields(folder, pre))
    for text in SAMPLES:
        assert theirs.encode(text) == ours.encode(text), text
        ids = theirs.encode(text, add_special_tokens=False)
        assert theirs.decode(ids, skip_special_tokens=False) == text
        assert ours.decode(ids, skip_special_tokens=False) == text
    assert theirs.bos_id == ours.bos_id and theirs.eos_ids == ours.eos_ids
    assert theirs.vocab_size == ours.vocab_size


def test_real_gguf_file_roundtrip(case, tmp_path):
    """The same metadata written with gguf-py and read back through :func:`gguf_fields`."""
    pre, folder, ours = case
    fields = _fields(folder, pre)
    path = tmp_path / "tok.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(fields["tokenizer.ggml.tokens"])
    writer.add_token_merges(fields["tokenizer.ggml.merges"])
    writer.add_token_types(fields["tokenizer.ggml.token_type"])
    writer.add_bos_token_id(fields["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(fields["tokenizer.ggml.eos_token_id"])
    writer.add_eot_token_id(fields["tokenizer.ggml.eot_token_id"])
    writer.add_add_bos_token(True)
    writer.add_chat_template(TEMPLATE)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    read = gguf_fields(gguf.GGUFReader(str(path)))
    assert read["tokenizer.ggml.tokens"] == fields["tokenizer.ggml.tokens"]
    assert read["tokenizer.ggml.add_bos_token"] is True
    tok = from_gguf(path, read)
    for text in SAMPLES:
        assert tok.encode(text) == ours.encode(text), text
    assert tok.chat_template == TEMPLATE


def test_unknown_gguf_tokenizer_model(tmp_path):
    fields = {"tokenizer.ggml.model": "rwkv", "tokenizer.ggml.tokens": ["a", "b"]}
    with pytest.raises(ModelFormatError, match="rwkv"):
        from_gguf(tmp_path / "m.gguf", fields)
