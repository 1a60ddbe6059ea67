"""Hook implementations: the ``llguidance`` constraint compiler and the ``[structured]``
configuration section."""

from __future__ import annotations

from forge_kernel import hookimpl


def _compiler(tokenizer, vocab_size):
    from forge_plugin_structured.compiler import LLGuidanceCompiler

    return LLGuidanceCompiler(tokenizer, vocab_size)


@hookimpl
def forge_register_constraint_compilers(register) -> None:
    register("llguidance", _compiler)


@hookimpl
def forge_register_config_sections(register) -> None:
    from forge_plugin_structured.config import StructuredConfig

    register("structured", StructuredConfig)


@hookimpl
def forge_configure(config) -> None:
    from forge_plugin_structured import config as module

    section = config.section("structured")
    if isinstance(section, module.StructuredConfig):
        module.CONFIG = section


@hookimpl
def forge_startup(context) -> None:
    from forge_plugin_structured import config

    if not config.CONFIG.warm_start:
        return
    import threading

    from forge_plugin_structured.vocab import ll_tokenizer

    engine = context.engine
    threading.Thread(target=ll_tokenizer, name="forge-structured-warm", daemon=True,
                     args=(engine.tokenizer, int(engine.model_config.vocab_size))).start()
