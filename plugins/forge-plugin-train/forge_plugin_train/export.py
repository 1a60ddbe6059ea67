"""``forge train export RUN --merge``: a standalone safetensors model directory from a run.

LoRA runs: the base (the run's ``model_dir``) loaded in fp32, the adapter applied and folded in
with PEFT's ``merge_and_unload``; full-SFT runs: the final weights as they are. The result loads
in transformers and in ``forge serve DIR``. ``--gguf TYPE`` then hands it to a registered
quantizer plugin that writes that type (none is bundled with this plugin).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from forge_kernel.errors import ConfigError
from forge_plugin_train.runs import Run


def merged_model(run: Run):  # noqa: ANN201 - a transformers model
    """The run's model with its adapter merged (in fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    final = Path(run.info.get("final") or run.dir / "final")
    if not final.is_dir():
        raise ConfigError(f"run {run.id} has no final weights (state {run.state}); "
                          "only completed runs can be exported")
    if not (final / "adapter_config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(str(final), dtype=torch.float32)
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(run.info["model_dir"], dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(final)).merge_and_unload()


def export(ref: str, merge: bool = True, out: str | None = None,
           gguf_type: str | None = None) -> Iterator[str]:
    """Write the export; yields one human-readable line per artifact written."""
    run = Run.load(ref)
    target = Path(out) if out else run.dir / "export"
    final = Path(run.info.get("final") or run.dir / "final")
    if not merge:
        shutil.copytree(final, target, dirs_exist_ok=True)
        yield f"copied {final} -> {target}"
        return
    from transformers import AutoTokenizer

    model = merged_model(run)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(final)).save_pretrained(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    yield f"merged safetensors model: {target}"
    if gguf_type:
        yield quantize_to_gguf(target, gguf_type)


def quantize_to_gguf(model_dir: Path, qtype: str) -> str:
    """Write ``model_dir``/model-QTYPE.gguf with the first quantizer plugin offering ``qtype``."""
    from forge_kernel.modeling import open_model_source
    from forge_kernel.plugins import get_host

    registry = get_host().registry
    for impl in registry.implementations("quantizer"):
        quantizer = impl.factory()
        if qtype in getattr(quantizer, "types", ()):
            source = open_model_source(model_dir)
            try:
                path = quantizer.quantize(source, model_dir / f"model-{qtype}.gguf", qtype)
            finally:
                source.close()
            return f"GGUF ({qtype}, by {impl.plugin}): {path}"
    offered = sorted({t for impl in registry.implementations("quantizer")
                      for t in getattr(impl.factory(), "types", ())})
    raise ConfigError(f"no quantizer plugin writes {qtype!r} "
                      f"(available: {', '.join(offered) or 'none installed'})")
