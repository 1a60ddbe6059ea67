"""Chat templates: the model's own (jinja2, sandboxed), a built-in one for families whose GGUF
files often omit it, or a plain fallback for base models.

Fallback (documented in the README): each message is written as ``<role>: <content>`` followed
by a blank line, and the generation prompt is ``assistant:``.
"""

from __future__ import annotations

import functools
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from forge_kernel.engine.types import InvalidRequest

GEMMA_TEMPLATE = """{{ bos_token }}
{%- set sys = '' -%}
{%- if messages and messages[0]['role'] == 'system' -%}
  {%- set sys = messages[0]['content'] ~ '\n\n' -%}
  {%- set messages = messages[1:] -%}
{%- endif -%}
{%- for m in messages -%}
  {%- if (m['role'] == 'user') != (loop.index0 % 2 == 0) -%}
    {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
  {%- endif -%}
  {{ '<start_of_turn>' ~ ('model' if m['role'] == 'assistant' else m['role']) ~ '\n' }}
  {{- (sys if loop.first else '') ~ (m['content'] | trim) ~ '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"""
"""Gemma's turn format (``<start_of_turn>role ... <end_of_turn>``; a system message is
prepended to the first user turn), used when a Gemma file carries no template."""

FALLBACK_TEMPLATE = """{%- for m in messages -%}
{{ m['role'] }}: {{ m['content'] }}

{% endfor -%}
{%- if add_generation_prompt -%}assistant:{%- endif -%}"""

BUILTIN_TEMPLATES = {"gemma": GEMMA_TEMPLATE, "gemma2": GEMMA_TEMPLATE,
                     "gemma3": GEMMA_TEMPLATE, "gemma3_text": GEMMA_TEMPLATE}


def _raise(message: str) -> None:
    raise TemplateError(message)


@functools.lru_cache(maxsize=16)
def _compile(source: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


def template_for(tokenizer: Any) -> str:
    """The template in use: the model's, a built-in for its family, or the fallback."""
    return (tokenizer.chat_template
            or BUILTIN_TEMPLATES.get(getattr(tokenizer, "architecture", ""))
            or FALLBACK_TEMPLATE)


def _text(content: Any) -> Any:
    """OpenAI content parts (``[{"type": "text", "text": ...}]``) -> plain text."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict)
                       and p.get("type") == "text")
    return content if content is not None else ""


def render_chat(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool,
                **kwargs: Any) -> str:
    """Render ``messages``; template errors (bad role order, ...) become
    :class:`InvalidRequest` on ``messages`` so servers answer 400."""
    def piece(token_id: int | None) -> str:
        return tokenizer.id_to_piece(token_id) if token_id is not None else ""

    eos = min(tokenizer.eos_ids) if tokenizer.eos_ids else None
    cleaned = [{**m, "content": _text(m.get("content"))} for m in messages]
    try:
        return _compile(template_for(tokenizer)).render(
            messages=cleaned, add_generation_prompt=add_generation_prompt,
            bos_token=piece(tokenizer.bos_id), eos_token=piece(eos), **kwargs)
    except TemplateError as exc:
        raise InvalidRequest(f"chat template error: {exc}", param="messages") from None
