"""Rebuild a ``tokenizers.Tokenizer`` from GGUF ``tokenizer.*`` metadata.

GGUF files carry no ``tokenizer.json``: only the vocabulary, per-token scores and types,
sometimes merges, and the special-token ids. We rebuild the same tokenizer the model was
trained with, on the Hugging Face ``tokenizers`` library (Rust: exact and fast), following the
conventions transformers uses when it loads a GGUF, so ids match that reference exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from forge_kernel.errors import ModelFormatError
from forge_plugin_tokenizers.tokenizer import HFTokenizer

CONTROL, USER_DEFINED = 3, 4
"""llama.cpp token types that are matched whole in text."""

_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
SPLIT_BY_PRE = {
    "llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT, "dbrx": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT,
}
"""``tokenizer.ggml.pre`` -> the split regex its merges were learned with (default: GPT-2)."""

_GEMMA_ARCHS = {"gemma", "gemma2", "gemma3", "gemma3_text"}


def _as_list(value: Any) -> list[Any]:
    """Metadata arrays arrive as lists or numpy arrays; ``None`` -> ``[]``."""
    if value is None:
        return []
    return value.tolist() if hasattr(value, "tolist") else list(value)


def gguf_fields(reader: Any) -> dict[str, Any]:
    """Plain-Python values of every ``tokenizer.*`` and ``general.*`` field of a GGUFReader."""
    fields: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith(("tokenizer.", "general.")):
            fields[key] = field.contents()
    return fields


def _byte_unicode() -> dict[int, str]:
    """GPT-2's printable spelling of the 256 byte values (byte-level BPE vocabularies)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def _merges_from_vocab(vocab: dict[str, int],
                       rank: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """Merges implied by a vocabulary without merges: every split of a token into two tokens
    of the vocabulary, best merged-token rank first (ties: shorter left part first, then
    shorter right part, then lower left / right ids). ``rank=None`` ranks tokens by their id,
    lowest first (the same as ``{t: -i for t, i in vocab.items()}``, without building it).

    Built without materializing a sort key per candidate: tokens are visited best rank first
    and a token's splits are already in (left length, right length) order, so only tokens that
    share a rank need their candidates sorted. The pairs reuse the vocabulary's own ``str``
    objects, so for Gemma's 262k-token vocabulary (~515k merges) the list costs ~35 MB instead
    of the ~200 MB of per-candidate tuples and sliced strings.
    """
    size = max(vocab.values(), default=-1) + 1
    spelled: list[str | None] = [None] * size
    for token, index in vocab.items():
        spelled[index] = token
    get = vocab.get

    def splits(token: str) -> Iterator[tuple[int, int]]:
        for cut in range(1, len(token)):
            left_id = get(token[:cut])
            if left_id is not None:
                right_id = get(token[cut:])
                if right_id is not None:
                    yield left_id, right_id

    merges: list[tuple[str, str]] = []
    if rank is None:  # ids are unique, so no ties
        for token in spelled:
            if token is not None:
                merges.extend((spelled[left], spelled[right]) for left, right in splits(token))
        return merges
    order = sorted(rank.items(), key=lambda item: -item[1])
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and order[stop][1] == order[start][1]:
            stop += 1
        if stop - start == 1:
            token = order[start][0]
            merges.extend((spelled[left], spelled[right]) for left, right in splits(token))
        else:  # tokens of equal rank: their candidates interleave by the tie-breaks
            tied = sorted((len(spelled[left]), len(spelled[right]), left, right)
                          for token, _ in order[start:stop] for left, right in splits(token))
            merges.extend((spelled[left], spelled[right]) for _, _, left, right in tied)
        start = stop
    return merges


def _sentencepiece(tokens: list[str], scores: list[float], merges: list[str] | None,
                   gemma: bool, add_space_prefix: bool,
                   unk: str | None) -> tuple[Tokenizer, list[str]]:
    """SentencePiece-style BPE with byte fallback (Gemma, Llama 2, TinyLlama, Mistral); also
    returns the vocabulary as spelled in the model."""
    if gemma:
        # Gemma stores runs of spaces as real spaces; the model sees them as "▁" runs.
        tokens = ["▁" * len(t) if t and not t.strip(" ") else t for t in tokens]
    vocab = {token: index for index, token in enumerate(tokens)}
    if merges:
        pairs = [tuple(m.split(" ", 1)) for m in merges]
    elif gemma:  # Gemma's scores do not follow its merge order; the file order does
        pairs = _merges_from_vocab(vocab)  # by id: the last index of a repeated token
    else:
        pairs = _merges_from_vocab(vocab, dict(zip(tokens, scores, strict=False)))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=True, byte_fallback=True,
                               unk_token=unk))
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if gemma:
        tok.normalizer = normalizers.Replace(" ", "▁")
    else:
        scheme = "first" if add_space_prefix else "never"
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme,
                                                     split=False)
        if add_space_prefix:
            steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    return tok, tokens


def _byte_level(tokens: list[str], merges: list[str] | None, pre: str | None) -> Tokenizer:
    """Byte-level BPE (GPT-2 family: Llama 3, Qwen 2/3)."""
    spelling = _byte_unicode()
    alphabet = set(spelling.values())
    vocab = {
        (t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode())): i
        for i, t in enumerate(tokens)
    }
    pairs = ([tuple(m.split(" ", 1)) for m in merges] if merges
             else _merges_from_vocab(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_BY_PRE.get(pre or "", _GPT2_SPLIT)), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def from_gguf(path: Path, fields: dict[str, Any]) -> HFTokenizer:
    """The tokenizer described by ``fields`` (see :func:`gguf_fields`) of the GGUF ``path``."""
    kind = fields.get("tokenizer.ggml.model")
    tokens = _as_list(fields.get("tokenizer.ggml.tokens"))
    if not kind or not tokens:
        raise ModelFormatError(path, "no tokenizer in the file (tokenizer.ggml.model/tokens "
                                     "missing)")
    types = _as_list(fields.get("tokenizer.ggml.token_type")) or [1] * len(tokens)
    merges = _as_list(fields.get("tokenizer.ggml.merges"))
    arch = str(fields.get("general.architecture", ""))
    unk_id = fields.get("tokenizer.ggml.unknown_token_id")
    if kind == "llama":
        scores = _as_list(fields.get("tokenizer.ggml.scores")) or [0.0] * len(tokens)
        tok, tokens = _sentencepiece(tokens, scores, merges, arch in _GEMMA_ARCHS,
                             bool(fields.get("tokenizer.ggml.add_space_prefix", True)),
                             tokens[unk_id] if unk_id is not None else None)
        add_bos_default = True  # llama.cpp's default for SentencePiece vocabularies
    elif kind == "gpt2":
        tok = _byte_level(tokens, merges, fields.get("tokenizer.ggml.pre"))
        add_bos_default = False
    else:
        raise ModelFormatError(path, f"unsupported tokenizer type {kind!r} "
                                     "(supported: llama/SentencePiece, gpt2/byte-level BPE)")
    byte_alphabet = set(_byte_unicode().values()) if kind == "gpt2" else None
    special, user = [], []
    for token, token_type in zip(tokens, types, strict=False):
        if token_type == CONTROL and (byte_alphabet is None or set(token) <= byte_alphabet):
            special.append(AddedToken(token, normalized=False, special=True))
        elif token_type == USER_DEFINED and tok.token_to_id(token) is not None:
            user.append(AddedToken(token, normalized=False, special=False))
    tok.add_special_tokens(special)
    tok.add_tokens(user)
    bos = fields.get("tokenizer.ggml.bos_token_id")
    eos = {fields[k] for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                               "tokenizer.ggml.eom_token_id") if fields.get(k) is not None}
    return HFTokenizer(
        tok,
        bos_id=bos,
        eos_ids=eos,
        add_bos=bool(fields.get("tokenizer.ggml.add_bos_token", add_bos_default)),
        chat_template=fields.get("tokenizer.chat_template"),
        architecture=arch,
        special_ids={i for i, t in enumerate(types) if t == CONTROL},
    )
