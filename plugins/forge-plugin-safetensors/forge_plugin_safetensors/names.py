"""Hugging Face tensor names -> canonical GGUF names, through gguf-py's ``TensorNameMap``.

gguf-py's table is the one llama.cpp's converter uses, including the architecture-specific
meanings (``post_attention_layernorm`` is Llama's pre-MLP ``ffn_norm`` but Gemma 3's
``post_attention_norm``), so a directory and its converted GGUF get the same names.
"""

from __future__ import annotations

from functools import lru_cache

_GGUF_ARCH = {"llama": "LLAMA", "mistral": "LLAMA", "qwen2": "QWEN2", "qwen3": "QWEN3",
              "gemma3": "GEMMA3", "gemma3_text": "GEMMA3"}
_PREFIXES = (
    ("model.language_model.", "model."),  # Gemma3ForConditionalGeneration, transformers 5
    ("language_model.model.", "model."),  # Gemma3ForConditionalGeneration, transformers 4
    ("language_model.lm_head.", "lm_head."),
)
SKIPPED = ("rotary_emb.inv_freq", "vision_tower.", "multi_modal_projector.", "model.vision_tower.",
           "model.multi_modal_projector.")
"""Stored tensors no text model needs (cached RoPE tables, the vision half of Gemma 3)."""


@lru_cache(maxsize=16)
def _name_map(arch: str, layers: int):
    import gguf

    return gguf.get_tensor_name_map(gguf.MODEL_ARCH[_GGUF_ARCH[arch]], layers)


def canonical_name(hf_name: str, arch: str, layers: int) -> str | None:
    """The GGUF name of ``hf_name``, or ``None`` for tensors the text model does not use."""
    for old, new in _PREFIXES:
        if hf_name.startswith(old):
            hf_name = new + hf_name[len(old):]
            break
    if any(part in hf_name for part in SKIPPED):
        return None
    return _name_map(arch, layers).get_name(hf_name, try_suffixes=(".weight", ".bias"))


def is_gemma_norm(name: str, arch: str) -> bool:
    """Gemma RMSNorm weights (all of them, q/k norms included) get llama.cpp's ``+1``."""
    return arch.startswith("gemma3") and name.endswith("norm.weight")
