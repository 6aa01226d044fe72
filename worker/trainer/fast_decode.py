"""One decoding step of a Llama-architecture model (Llama, SmolLM2, ...) without the layers of
module calls around it.

Per layer the step runs four matrix multiplies on weights prepared once per sampling call:
q/k/v fused, o, gate/up fused, down, each with the LoRA update already added and packed for
the CPU kernel (frozen_linear.py). Norms and
rotary embeddings are the model's own modules, so the numbers match the model's forward. The
keys and values go straight into the reserved cache's buffers. Other architectures decode
through the model's own forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.trainer.frozen_linear import FrozenLinear
from worker.trainer.kv_cache import ReservedLayer


def merged_weight(module: Any) -> Tensor:
    """The weight a (possibly LoRA-wrapped) linear layer applies: W + scale * B @ A."""
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    weight = base.weight.detach()
    if "default" in getattr(module, "lora_A", {}) and not getattr(
        module, "disable_adapters", False
    ):
        weight = weight + module.get_delta_weight("default").to(weight.dtype)
    return weight


def fused(*modules: Any) -> FrozenLinear:
    """One multiply for several linear layers that read the same input."""
    return FrozenLinear(torch.cat([merged_weight(module) for module in modules]))


def supports(config: Any) -> bool:
    """Llama-style blocks: no projection biases, SiLU MLP, every layer full attention."""
    text_config = config.get_text_config(decoder=True)
    layer_types = getattr(text_config, "layer_types", None) or ["full_attention"]
    return (
        text_config.model_type == "llama"
        and not getattr(text_config, "attention_bias", False)
        and not getattr(text_config, "mlp_bias", False)
        and text_config.hidden_act == "silu"
        and all(layer_type == "full_attention" for layer_type in layer_types)
    )


@dataclass
class LayerWeights:
    input_norm: Any
    post_norm: Any
    qkv: FrozenLinear  # hidden -> (heads + 2 * kv_heads) * head_dim
    o: FrozenLinear
    gate_up: FrozenLinear  # hidden -> 2 * intermediate
    down: FrozenLinear


class FastDecoder:
    def __init__(self, decoder: Any) -> None:
        config = decoder.config
        self.decoder = decoder
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scaling = self.head_dim**-0.5
        self.layers = []
        with torch.no_grad():
            for layer in decoder.layers:
                attention, mlp = layer.self_attn, layer.mlp
                self.layers.append(
                    LayerWeights(
                        input_norm=layer.input_layernorm,
                        post_norm=layer.post_attention_layernorm,
                        qkv=fused(attention.q_proj, attention.k_proj, attention.v_proj),
                        o=fused(attention.o_proj),
                        gate_up=fused(mlp.gate_proj, mlp.up_proj),
                        down=fused(mlp.down_proj),
                    )
                )

    @torch.no_grad()
    def step(self, tokens: Tensor, position: Tensor, key_mask: Tensor | None, cache: Any) -> Tensor:
        """tokens [N], position [N, 1], key_mask [N, L] (1 = attend) or None, cache holding
        L - 1 positions -> last hidden state [N, d] after the final norm."""
        rows = tokens.shape[0]
        hidden = self.decoder.embed_tokens(tokens)  # [N, d]
        cos, sin = self.decoder.rotary_emb(hidden, position)  # [N, 1, head_dim]
        bias = None
        if key_mask is not None:
            bias = torch.zeros(key_mask.shape, dtype=hidden.dtype, device=hidden.device)
            bias.masked_fill_(key_mask == 0, float("-inf"))
            bias = bias[:, None, None, :]  # [N, 1, 1, L]
        group = self.heads // self.kv_heads
        for weights, cache_layer in zip(self.layers, cache.layers, strict=True):
            normed = weights.input_norm(hidden)
            qkv = weights.qkv(normed)
            q, k, v = qkv.split(
                [
                    self.heads * self.head_dim,
                    self.kv_heads * self.head_dim,
                    self.kv_heads * self.head_dim,
                ],
                dim=-1,
            )
            q = rotate(q.view(rows, self.heads, self.head_dim), cos, sin)
            k = rotate(k.view(rows, self.kv_heads, self.head_dim), cos, sin)
            keys, values = append(cache_layer, k, v.view(rows, self.kv_heads, self.head_dim))
            # grouped-query attention for one query position: [N, kv, group, d] x [N, kv, L, d]
            q = q.view(rows, self.kv_heads, group, self.head_dim)
            scores = (q @ keys.transpose(-1, -2)) * self.scaling
            if bias is not None:
                scores = scores + bias
            attended = torch.softmax(scores.float(), dim=-1).to(values.dtype) @ values
            hidden = hidden + weights.o(attended.reshape(rows, -1))
            gate, up = weights.gate_up(weights.post_norm(hidden)).chunk(2, dim=-1)
            hidden = hidden + weights.down(F.silu(gate) * up)
        return self.decoder.norm(hidden)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding as the model applies it: x * cos + rotate_half(x) * sin."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def append(layer: ReservedLayer, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Write one position's keys and values [N, kv, d] into the cache; return the filled part."""
    end = layer.length + 1
    layer.key_buffer[:, :, layer.length] = k
    layer.value_buffer[:, :, layer.length] = v
    layer.length = end
    layer.keys = layer.key_buffer[:, :, :end]
    layer.values = layer.value_buffer[:, :, :end]
    return layer.keys, layer.values
