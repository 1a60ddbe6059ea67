"""Hook implementations: the ``exl2`` quantizer and weight loader."""

from __future__ import annotations

from forge_kernel import hookimpl


def _quantizer():
    from forge_plugin_exl2.quantizer import Exl2Quantizer

    return Exl2Quantizer()


def _loader():
    from forge_plugin_exl2.loader import Exl2Loader

    return Exl2Loader()


@hookimpl
def forge_register_quantizers(register) -> None:
    register("exl2", _quantizer)


@hookimpl
def forge_register_weight_loaders(register) -> None:
    register("exl2", _loader)
