"""Which requests may be cached, and the cache key of one.

Only deterministic requests are cached: ``temperature`` 0 (greedy) or a fixed ``seed``. The key
is the SHA-256 of a canonical JSON document holding the route, the served model's fingerprint,
the caller's identity and the *normalized* request body:

* volatile fields that do not change the answer are dropped (``user``, ``metadata``, ``store``,
  ``service_tier`` and this plugin's own ``cache`` switch);
* fields equal to their documented default are dropped (``n: 1``, ``stream: false``, zero
  penalties...), so spelling a default out does not split the cache; type-strict, because
  ``logprobs: 0`` (one-token logprobs of a completion) is not ``logprobs: false``;
* ``max_completion_tokens`` and ``max_tokens`` of a chat are one setting (the first wins, as in
  the OpenAI plugin); a completion without ``max_tokens`` gets its default, 16;
* everything else — messages, prompt, ``n``, ``logprobs``, ``stop``, ``stream`` and
  ``stream_options`` (they change the body's shape), the model name — is part of the key.

The identity is the API key's *name* as the auth middleware admitted it (never the secret);
with ``share_across_keys`` every caller shares one identity.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

ROUTES = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}
VOLATILE = frozenset({"user", "metadata", "store", "service_tier", "cache"})
_DEFAULTS: dict[str, dict[str, Any]] = {
    "chat": {"n": 1, "stream": False, "presence_penalty": 0, "frequency_penalty": 0,
             "logprobs": False, "min_tokens": 0, "ignore_eos": False,
             "add_generation_prompt": True},
    "completion": {"n": 1, "stream": False, "presence_penalty": 0, "frequency_penalty": 0,
                   "echo": False, "min_tokens": 0, "ignore_eos": False},
}
SHARED_IDENTITY = "*"
KEY_VERSION = 1


@dataclass(slots=True, frozen=True)
class CacheRequest:
    """A cacheable request: its exact ``key``, the ``group`` of requests that differ from it
    only in the prompt (what semantic matching compares within) and the prompt ``text``
    (``None`` when the prompt is token ids, which semantic matching skips)."""

    key: str
    group: str
    text: str | None


def _is_default(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return value is default
    return isinstance(value, int | float) and value == default


def deterministic(body: dict[str, Any]) -> bool:
    """Whether the request's answer is reproducible: greedy, or sampled with a fixed seed.
    A missing temperature means the model's default, which samples, so it needs a seed."""
    temperature, seed = body.get("temperature"), body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return True
    return (isinstance(temperature, int | float) and not isinstance(temperature, bool)
            and temperature == 0)


def normalize(route: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body with volatile fields and spelled-out defaults removed (see module doc)."""
    kind = ROUTES[route]
    defaults = _DEFAULTS[kind]
    out = {k: v for k, v in body.items()
           if k not in VOLATILE and v is not None
           and not (k in defaults and _is_default(v, defaults[k]))}
    if kind == "chat":
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        out.pop("max_completion_tokens", None)
        out.pop("max_tokens", None)
        if limit is not None:
            out["max_tokens"] = limit
    elif "max_tokens" not in out:
        out["max_tokens"] = 16
    if isinstance(out.get("stream_options"), dict) and not out.get("stream"):
        out.pop("stream_options")  # ignored without streaming
    return out


def prompt_text(route: str, body: dict[str, Any]) -> str | None:
    """The text semantic matching embeds: the conversation (``role: content`` lines) or the
    prompt string; ``None`` for token-id or multi-prompt completions."""
    if ROUTES[route] == "completion":
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else None
    lines = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            return None
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        lines.append(f"{message.get('role')}: {content or ''}")
    return "\n".join(lines) or None


def _digest(document: dict[str, Any]) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def model_fingerprint(model_name: str, aliases: set[str] | None = None) -> str:
    """The served model's name plus size and mtime of its file, so a persistent tier (disk,
    Redis) never answers for a different model served under the same name."""
    parts = [model_name]
    for alias in sorted(aliases or ()):
        if os.path.isabs(alias) and os.path.exists(alias):
            stat = os.stat(alias)
            parts.append(f"{alias}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def cache_request(route: str, body: dict[str, Any], identity: str,
                  fingerprint: str) -> CacheRequest | None:
    """The cache entry a request maps to, or ``None`` if it must not be cached."""
    if route not in ROUTES or not deterministic(body):
        return None
    normalized = normalize(route, body)
    base = {"v": KEY_VERSION, "route": route, "model": fingerprint, "identity": identity}
    prompt_field = "messages" if ROUTES[route] == "chat" else "prompt"
    rest = {k: v for k, v in normalized.items() if k != prompt_field}
    return CacheRequest(key=_digest({**base, "request": normalized}),
                        group=_digest({**base, "request": rest, "semantic": True}),
                        text=prompt_text(route, body))
