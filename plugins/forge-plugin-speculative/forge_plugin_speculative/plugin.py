"""Entry point of forge-plugin-speculative: the ``ngram`` and ``draft`` speculators
(``forge_register_speculators``). The engine builder creates the one ``EngineConfig.speculative``
names; the engine then holds it and calls it inside every step, without hook dispatch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forge_kernel import hookimpl
from forge_kernel.errors import ConfigError

if TYPE_CHECKING:  # torch: imported when a speculator is built, not when plugins are discovered
    from forge_plugin_speculative.speculator import Speculator

METHODS = "ngram, or draft:MODEL (a model with the same tokenizer)"


@hookimpl
def forge_register_speculators(register) -> None:
    register("ngram", build_speculator)
    register("draft", build_speculator)


def build_speculator(config: Any, *, model: Any, tokenizer: Any, backend: Any,
                     kv_cache: Any) -> Speculator:
    """The :class:`Speculator` for ``config.speculative`` (``"ngram"`` or ``"draft:MODEL"``)
    with up to ``config.num_speculative_tokens`` drafts per row and step."""
    from forge_plugin_speculative.speculator import Speculator

    method = str(config.speculative).strip()
    k = config.num_speculative_tokens
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 64:
        raise ConfigError(f"num_speculative_tokens must be an integer in [1, 64], got {k!r}")
    if not kv_cache.supports_truncate:
        raise ConfigError(f"speculative decoding needs a KV cache that can roll back rejected "
                          f"tokens; {kv_cache.name!r} does not (supports_truncate is false)")
    if method == "ngram":
        from forge_plugin_speculative.ngram import NgramProposer

        return Speculator(NgramProposer(), k)
    if method.startswith("draft:") and method[len("draft:"):].strip():
        from forge_plugin_speculative.loading import load_draft

        return Speculator(load_draft(method[len("draft:"):].strip(), config, model, tokenizer,
                                     backend), k)
    raise ConfigError(f"unknown speculative method {method!r}: use {METHODS}")
