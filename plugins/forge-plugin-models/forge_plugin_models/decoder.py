"""The decoder-only transformer every family here shares, parameterized by :class:`DecoderSpec`.

A family file (``llama.py``, ``qwen.py``, ``gemma3.py``) only says how its model differs: biases,
q/k norms, sandwich norms, activation, embedding scale, per-layer window and RoPE base. The
forward pass runs on flat ``[T, hidden]`` activations covering every chunk of the step, so each
projection is one backend call per layer per step, whatever the batch looks like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from forge_kernel.errors import ModelFormatError
from forge_kernel.interfaces.backend import Backend
from forge_kernel.interfaces.batch import ForwardBatch
from forge_kernel.interfaces.kv_cache import KVCache, KVCacheSpec
from forge_kernel.interfaces.loader import ModelConfig, ModelSource
from forge_kernel.interfaces.model import CausalLM
from forge_plugin_models import fused
from forge_plugin_models.layers import TORCH_OPS, GatedMLP, RotaryTable


@dataclass(slots=True)
class DecoderSpec:
    """How one family's decoder differs from plain Llama."""

    activation: str = "silu"
    qk_norm: bool = False
    """Per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3)."""
    sandwich_norms: bool = False
    """Extra RMSNorm after attention and after the MLP (Gemma 3's ``post_*_norm``)."""
    embed_scale: float | None = None
    """Multiply embeddings by this (Gemma: ``sqrt(hidden_size)``)."""
    attn_scale: float | None = None
    """Softmax scale; ``None`` means ``head_dim ** -0.5``."""
    attn_softcap: float | None = None
    final_softcap: float | None = None
    layer_windows: list[int | None] = field(default_factory=list)
    """Sliding window per layer (``None``: full attention); empty means all full."""
    layer_rope: list[int] = field(default_factory=list)
    """Index into the RoPE tables per layer; empty means table 0 everywhere."""
    rope_tables: list[RotaryTable] = field(default_factory=list)


@dataclass(slots=True)
class _Layer:
    attn_norm: torch.Tensor
    q: object
    k: object
    v: object
    o: object
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None
    post_attn_norm: torch.Tensor | None
    ffn_norm: torch.Tensor
    mlp: GatedMLP
    post_ffn_norm: torch.Tensor | None
    window: int | None
    rope: int
    """Index of this layer's table in ``DecoderSpec.rope_tables``."""
    qkv: fused.FusedProjection | None = None
    """q, k and v in one backend call when the backend fuses them (see :mod:`.fused`)."""


class DecoderLM(CausalLM):
    """A runnable decoder built from canonical (GGUF-named) tensors through a backend."""

    lora = None
    """Per-request LoRA adapters (forge-plugin-train wraps :meth:`projections` and sets this);
    its ``begin_step(batch)`` runs once per step. ``None``, the default, costs nothing."""

    def __init__(self, source: ModelSource, backend: Backend, spec: DecoderSpec) -> None:
        cfg = self.config = source.config
        self.backend = backend
        self.spec = spec
        self.dtype = backend.compute_dtype
        self.ops = backend.layer_ops or TORCH_OPS
        """Norms, RoPE and gated activations: the backend's fused kernels when it has them."""
        self.eps = float(cfg.rms_norm_eps)
        self.scale = spec.attn_scale if spec.attn_scale is not None else cfg.head_dim**-0.5
        tensors = source.tensors

        def tensor(name: str, shape: tuple[int, ...]):
            if name not in tensors:
                raise ModelFormatError(source.path, f"tensor {name!r} is missing (needed by the "
                                                    f"{cfg.architecture} architecture)")
            weight = tensors[name]
            if tuple(weight.shape) != shape:
                raise ModelFormatError(
                    source.path,
                    f"tensor {name!r} has shape {tuple(weight.shape)}, expected {shape}"
                )
            return weight

        def optional(name: str, shape: tuple[int, ...]):
            return tensor(name, shape) if name in tensors else None

        def norm(name: str, dim: int) -> torch.Tensor:
            return backend.dense(tensor(name, (dim,))).to(torch.float32)

        def linear(prefix: str, out_dim: int, in_dim: int):
            w = tensor(f"{prefix}.weight", (out_dim, in_dim))
            return backend.linear(w, optional(f"{prefix}.bias", (out_dim,)))

        def shared_input(prefixes: list[str], dims: list[int], in_dim: int):
            """(fused op or None, one op per prefix) for projections of the same input."""
            ws = [tensor(f"{p}.weight", (d, in_dim)) for p, d in zip(prefixes, dims, strict=True)]
            bs = [optional(f"{p}.bias", (d,)) for p, d in zip(prefixes, dims, strict=True)]
            one, parts = fused.build(backend, ws, bs)
            return one, parts or [backend.linear(w, b) for w, b in zip(ws, bs, strict=True)]

        hidden, inter, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
        q_dim, kv_dim = cfg.num_heads * hd, cfg.num_kv_heads * hd
        embd = tensor("token_embd.weight", (cfg.vocab_size, hidden))
        self.tok_embed = backend.embedding(embd)
        # Tied head: the same WeightTensor, so the backend may share memory with the embedding.
        head = optional("output.weight", (cfg.vocab_size, hidden))
        self.lm_head = backend.linear(head if head is not None else embd)
        self.output_norm = norm("output_norm.weight", hidden)
        if spec.embed_scale is not None:
            # transformers casts the scale to the weight dtype before multiplying.
            self.embed_scale = torch.tensor(spec.embed_scale, dtype=torch.float32).to(self.dtype)
        else:
            self.embed_scale = None

        windows = spec.layer_windows or [None] * cfg.num_layers
        ropes = spec.layer_rope or [0] * cfg.num_layers
        self.layers: list[_Layer] = []
        for i in range(cfg.num_layers):
            p = f"blk.{i}"
            qkv, (q, k, v) = shared_input([f"{p}.attn_q", f"{p}.attn_k", f"{p}.attn_v"],
                                         [q_dim, kv_dim, kv_dim], hidden)
            gate_up, (gate, up) = shared_input([f"{p}.ffn_gate", f"{p}.ffn_up"], [inter, inter],
                                              hidden)
            self.layers.append(_Layer(
                attn_norm=norm(f"{p}.attn_norm.weight", hidden),
                q=q, k=k, v=v, qkv=qkv,
                o=linear(f"{p}.attn_output", hidden, q_dim),
                q_norm=norm(f"{p}.attn_q_norm.weight", hd) if spec.qk_norm else None,
                k_norm=norm(f"{p}.attn_k_norm.weight", hd) if spec.qk_norm else None,
                post_attn_norm=(norm(f"{p}.post_attention_norm.weight", hidden)
                                if spec.sandwich_norms else None),
                ffn_norm=norm(f"{p}.ffn_norm.weight", hidden),
                mlp=GatedMLP(gate, up, linear(f"{p}.ffn_down", hidden, inter), spec.activation,
                             gate_up=gate_up, ops=self.ops),
                post_ffn_norm=(norm(f"{p}.post_ffw_norm.weight", hidden)
                               if spec.sandwich_norms else None),
                window=windows[i],
                rope=ropes[i],
            ))

    def projections(self) -> dict[str, tuple[object, str]]:
        """Every layer's linear projection by its Hugging Face module name (as PEFT adapters
        name them, ``layers.3.self_attn.q_proj``) -> ``(holder, attribute)``, so a plugin can
        replace the callable (``setattr(holder, attribute, wrapped)``)."""
        names = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                 "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
                 "down": "mlp.down_proj"}
        return {f"layers.{i}.{hf}": (layer.mlp if hf.startswith("mlp") else layer, attr)
                for i, layer in enumerate(self.layers) for attr, hf in names.items()}

    def kv_cache_spec(self) -> KVCacheSpec:
        cfg = self.config
        return KVCacheSpec(num_layers=cfg.num_layers, num_kv_heads=cfg.num_kv_heads,
                           head_dim=cfg.head_dim, dtype=self.dtype, device=self.backend.device,
                           max_model_len=cfg.context_length)

    # no_grad rather than inference_mode: callers (samplers, logits processors) may modify the
    # returned logits in place, which inference tensors forbid outside inference mode.
    @torch.no_grad()
    def hidden_states(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        """Final hidden states ``[T, hidden]`` before the output norm, for every token."""
        cfg, spec = self.config, self.spec
        nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        T = batch.token_ids.shape[0]
        if self.lora is not None:  # which rows get which adapter's delta, once per step
            self.lora.begin_step(batch)
        x = self.tok_embed(batch.token_ids).to(self.dtype)  # [T, hidden]
        # a new tensor either way: layer ops may add the residuals into x in place
        x = x * self.embed_scale if self.embed_scale is not None else x.clone()
        positions = batch.positions.to(torch.long)
        # cos/sin rows per table, gathered once per step rather than once per layer. Tables stay
        # on the CPU (they grow on demand); only the step's rows go to the activations' device.
        rope = [tuple(t.to(device=x.device, dtype=self.dtype)
                      for t in table.lookup(positions.cpu()))
                for table in spec.rope_tables]
        ops, eps, layers = self.ops, self.eps, self.layers
        # Each residual step also norms the sum for the next block, so the attention norm of
        # layer i+1 is computed with layer i's MLP residual (one fused call on backends that
        # offer layer ops).
        h = ops.rms_norm(x, layers[0].attn_norm, eps) if layers else None  # [T, hidden]
        for index, layer in enumerate(layers):
            if layer.qkv is not None and layer.qkv.intact(layer.q, layer.k, layer.v):
                q, k, v = layer.qkv(h)
            else:
                q, k, v = layer.q(h), layer.k(h), layer.v(h)
            q = q.view(T, nh, hd)  # [T, H, D]
            k = k.view(T, nkv, hd)  # [T, KV, D]
            v = v.view(T, nkv, hd)  # [T, KV, D]
            cos, sin = rope[layer.rope]
            q, k = ops.qk_rope(q, k, layer.q_norm, layer.k_norm, cos, sin, eps)
            attn = kv_cache.attend(index, q, k, v, batch, scale=self.scale,
                                   sliding_window=layer.window,
                                   logit_softcap=spec.attn_softcap)  # [T, H, D]
            out = layer.o(attn.reshape(T, nh * hd))  # [T, hidden]
            x, h = ops.residual_norm(x, out, layer.post_attn_norm, layer.ffn_norm, eps)
            out = layer.mlp(h)
            after = layers[index + 1].attn_norm if index + 1 < len(layers) else None
            x, h = ops.residual_norm(x, out, layer.post_ffn_norm, after, eps)
        return x

    @torch.no_grad()
    def forward(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        # num_logits > 1: a decode row with speculative drafts needs a row per drafted token.
        rows = [i for chunk, _, end in batch.iter_spans() if chunk.needs_logits
                for i in range(end - chunk.num_logits, end)]
        x = self.hidden_states(batch, kv_cache)
        if not rows:
            return torch.empty(0, self.config.vocab_size, dtype=torch.float32)
        # Only the rows that need logits go through the (large) output projection; rows are
        # increasing, so as many as x has means all of them (every decode step).
        last = x if len(rows) == x.shape[0] else x[torch.tensor(rows, dtype=torch.long)]
        logits = self.lm_head(self.ops.rms_norm(last, self.output_norm, self.eps)).float()
        # logits: [N, vocab]
        if self.spec.final_softcap is not None:
            cap = self.spec.final_softcap
            logits = torch.tanh(logits / cap) * cap
        return logits

    @torch.no_grad()
    def embed(self, batch: ForwardBatch, kv_cache: KVCache) -> torch.Tensor:
        """Mean of the output-normed hidden states of each chunk ``[num_chunks, hidden]``."""
        x = self.ops.rms_norm(self.hidden_states(batch, kv_cache), self.output_norm,
                              self.eps).float()
        return torch.stack([x[b:e].mean(0) for _, b, e in batch.iter_spans()])


def check_config(source: ModelSource, cfg: ModelConfig) -> None:
    """Reject hyperparameters the decoder cannot run, naming the file and the value."""
    if cfg.num_heads <= 0 or cfg.num_kv_heads <= 0 or cfg.num_heads % cfg.num_kv_heads:
        raise ModelFormatError(
            source.path, f"num_heads={cfg.num_heads} is not a multiple of "
                         f"num_kv_heads={cfg.num_kv_heads}")
    if cfg.head_dim <= 0 or cfg.head_dim % 2:
        raise ModelFormatError(source.path, f"head_dim={cfg.head_dim} must be positive and even")
