"""Reading training files record by record, and turning records into text segments.

Formats (``data.format``; ``auto`` detects per file from the first record's keys):

- ``text``: ``{"text": ...}`` or a ``.txt`` file (one record per non-empty line), all trained;
- ``prompt_completion``: ``{"prompt", "completion"}``, the prompt masked;
- ``alpaca``: ``{"instruction", "input"?, "output"}``, the Alpaca prompt template masked;
- ``messages``: ``{"messages": [{"role", "content"}, ...]}``, only assistant turns trained;
- ``preference``: ``{"prompt", "chosen", "rejected"}`` (DPO), optionally with
  ``ref_chosen_logp``/``ref_rejected_logp``.

Every error names the file, the line (record number for ``.json``) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from forge_kernel.errors import ForgeError

ALPACA_PROMPT = ("Below is an instruction that describes a task{ctx}. Write a response that "
                 "appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
                 "{input}### Response:\n")
ROLES = ("system", "user", "assistant")


class DataError(ForgeError):
    """A training file or one of its records is malformed; says where and what."""


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` pairs; ``.jsonl`` and ``.txt`` are streamed line by line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not valid JSON: {exc}") from None
        if isinstance(raw, dict) and isinstance(raw.get("data"), list):
            raw = raw["data"]
        if not isinstance(raw, list):
            raise DataError(f"{path}: a .json data file must hold a list of records "
                            "(or {\"data\": [...]})")
        for index, record in enumerate(raw, 1):
            if not isinstance(record, dict):
                raise DataError(f"{path}: record {index}: must be an object, not "
                                f"{type(record).__name__}")
            yield index, record
        return
    with path.open("r", encoding="utf-8", errors="strict") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if suffix == ".txt":
                yield line_no, {"text": line.rstrip("\n")}
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid JSON: {exc.msg} "
                                f"(column {exc.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line_no}: a record must be a JSON object")
            yield line_no, record


def detect_format(record: dict[str, Any], where: str) -> str:
    """The format a record's keys announce."""
    if "chosen" in record or "rejected" in record:
        return "preference"
    if "messages" in record:
        return "messages"
    if "instruction" in record:
        return "alpaca"
    if "prompt" in record or "completion" in record:
        return "prompt_completion"
    if "text" in record:
        return "text"
    raise DataError(f"{where}: cannot tell the format from fields {sorted(record)}; expected "
                    "text, prompt/completion, instruction/output, messages or "
                    "prompt/chosen/rejected")


def _text(record: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        what = "is missing" if value is None else f"must be a string, not {type(value).__name__}"
        raise DataError(f"{where}: field '{key}' {what}")
    return value


def segments(record: dict[str, Any], fmt: str, where: str, chat: ChatFormat,
             mask_prompt: bool = True) -> list[tuple[str, bool]]:
    """``[(text, trained), ...]`` for an SFT record (``trained`` False: label -100)."""
    keep = not mask_prompt
    if fmt == "text":
        return [(_text(record, "text", where), True)]
    if fmt == "prompt_completion":
        return [(_text(record, "prompt", where), keep), (_text(record, "completion", where), True)]
    if fmt == "alpaca":
        extra = _text(record, "input", where, required=False)
        prompt = ALPACA_PROMPT.format(
            ctx=", paired with an input that provides further context" if extra else "",
            instruction=_text(record, "instruction", where),
            input=f"### Input:\n{extra}\n\n" if extra else "")
        return [(prompt, keep), (_text(record, "output", where), True)]
    if fmt == "messages":
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: field 'messages' must be a non-empty list")
        out: list[tuple[str, bool]] = []
        for i, message in enumerate(messages):
            at = f"{where}: field 'messages[{i}]"
            if not isinstance(message, dict):
                raise DataError(f"{at}' must be an object with role and content")
            role = message.get("role")
            if role not in ROLES:
                raise DataError(f"{at}.role' is {role!r}; expected one of {', '.join(ROLES)}")
            content = message.get("content")
            if not isinstance(content, str):
                raise DataError(f"{at}.content' must be a string")
            head, body, tail = chat.turn(role)
            trained = role == "assistant"
            out += [(head, keep), (content + body, trained or keep), (tail, keep)]
        if not any(m.get("role") == "assistant" for m in messages):
            raise DataError(f"{where}: field 'messages' has no assistant turn to train on")
        return [(text, trained) for text, trained in out if text]
    raise DataError(f"{where}: format {fmt!r} is not an SFT format")


def preference(record: dict[str, Any], where: str, chat: ChatFormat,
               need_ref: bool) -> dict[str, Any]:
    """A DPO record: prompt text (chat-formatted when it is a message list), both answers."""
    prompt = record.get("prompt")
    if isinstance(prompt, list):
        prompt = chat.prompt(prompt, where)
    elif not isinstance(prompt, str):
        raise DataError(f"{where}: field 'prompt' must be a string or a list of messages")
    out: dict[str, Any] = {"prompt": prompt, "chosen": _text(record, "chosen", where),
                           "rejected": _text(record, "rejected", where)}
    if need_ref:
        for key in ("ref_chosen_logp", "ref_rejected_logp"):
            value = record.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(f"{where}: field '{key}' must be a number "
                                "(dpo.reference is 'precomputed')")
            out[key] = float(value)
    return out


class ChatFormat:
    """Turn markers of the model's chat format (Gemma's when its tokens exist, else plain)."""

    def __init__(self, tokenizer: Any) -> None:
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        self.gemma = "<start_of_turn>" in vocab and "<end_of_turn>" in vocab
        self.eos = tokenizer.eos_token or ""

    def turn(self, role: str) -> tuple[str, str, str]:
        """``(head, body_suffix, tail)``: the body suffix is trained with the content."""
        if self.gemma:  # Gemma has no system role: its template folds it into the user turn
            name = {"assistant": "model", "system": "user"}.get(role, role)
            return f"<start_of_turn>{name}\n", "<end_of_turn>", "\n"
        return f"### {role.capitalize()}:\n", self.eos if role == "assistant" else "", "\n\n"

    def prompt(self, messages: list[Any], where: str) -> str:
        """A rendered prompt ending where the assistant's answer starts."""
        parts = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise DataError(f"{where}: field 'prompt[{i}]' must be {{role, content}}")
            head, body, tail = self.turn(message.get("role", "user"))
            parts.append(head + message["content"] + body + tail)
        return "".join(parts) + self.turn("assistant")[0]
