"""Tokenizers of Hugging Face model directories (``tokenizer.json`` + configs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from forge_kernel.errors import ModelFormatError
from forge_plugin_tokenizers.tokenizer import HFTokenizer


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ModelFormatError(path, f"invalid JSON ({exc})") from None


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def from_hf_dir(path: Path) -> HFTokenizer:
    """The tokenizer of the model directory ``path``."""
    path = Path(path)
    file = path / "tokenizer.json"
    if not file.is_file():
        raise ModelFormatError(path, "no tokenizer.json in the model directory")
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust library raises plain Exception
        raise ModelFormatError(file, f"unreadable tokenizer ({exc})") from None
    tok_config = _read_json(path / "tokenizer_config.json")
    gen_config = _read_json(path / "generation_config.json")
    model_config = _read_json(path / "config.json")
    bos_text = _token_text(tok_config.get("bos_token"))
    bos_id = tok.token_to_id(bos_text) if bos_text else model_config.get("bos_token_id")
    eos_ids: set[int] = set()
    for source in (gen_config.get("eos_token_id"), model_config.get("eos_token_id")):
        if source is not None:
            eos_ids |= set(source if isinstance(source, list) else [source])
    eos_text = _token_text(tok_config.get("eos_token"))
    if eos_text and tok.token_to_id(eos_text) is not None:
        eos_ids.add(tok.token_to_id(eos_text))
    add_bos = tok_config.get("add_bos_token")
    if add_bos is None:  # Llama 3 style: only the post-processor says whether BOS is added
        add_bos = bos_id is not None and tok.encode("a").ids[:1] == [bos_id]
    # BOS is added explicitly by HFTokenizer; drop a post-processor that would add it again
    tok.post_processor = None
    template = tok_config.get("chat_template")
    if template is None and (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text()
    if isinstance(template, list):  # named templates: use the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return HFTokenizer(
        tok, bos_id=bos_id, eos_ids=eos_ids,
        add_bos=bool(add_bos),
        chat_template=template, architecture=str(model_config.get("model_type", "")))
