"""Llama-style decoders (Llama, SmolLM2, Qwen2/2.5, Qwen3) and Gemma 3 run as fused layers
instead of the layers of module calls around them: decoding steps, prompt prefill, and the
training forward.

Per layer there are four matrix multiplies by the frozen base weights: q/k/v fused, o,
gate/up fused, down, each followed by its LoRA update as one low-rank product (x A^T) B^T
(block-diagonal B across the fused parts, the scale folded in) and by its bias where the
model has one (Qwen2's q/k/v). For sampling the base weights are packed once per run for the
CPU kernel (frozen_linear.py) and the adapter is read where the optimizer keeps it, so nothing
is merged or repacked per call (merging and repacking 135M weights cost ~0.7 s per call). For
training the same layers run under autograd, with gradients for the adapter only; that saves
peft's per-module scaling and the separate projections (~20% of the forward). Norms (Qwen3's
per-head q/k norms included) and rotary embeddings are the model's own modules, so the numbers
match the model's forward. Gemma 3 differs in ways read from the model: norms around both
halves of a layer as well as before them, a GELU MLP (the model's own activation), a rotary
embedding per layer type, and sliding-window layers, whose attention masks also hide keys a
window or more back (the same rule as the model's masks: cache index for sampling, position
for the packed training forward, `logprobs.decoder_masks`). Other architectures, and Gemma 2
with its soft-capped attention scores, run through the model's own forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.trainer.frozen_linear import FrozenLinear
from worker.trainer.kv_cache import ReservedLayer

ADAPTER = "default"


# the architectures whose blocks are pre-norm attention + SiLU-gated MLP with the projections,
# norms and rotary embedding this module reads by name
LLAMA_STYLE_MODEL_TYPES = ("llama", "qwen2", "qwen3")
# Gemma 3's text model: the same projections, with the differences the module docstring lists
GEMMA3_MODEL_TYPE = "gemma3_text"
FULL, SLIDING = "full_attention", "sliding_attention"


def supports(config: Any, decoder: Any) -> bool:
    """An architecture this module runs as the model does: Llama-style with a SiLU MLP and
    every layer attending to the whole context, or Gemma 3's causal text model without
    soft-capped attention scores (on a transformers whose rotary embedding takes the layer
    type)."""
    text_config = config.get_text_config(decoder=True)
    layer_types = getattr(text_config, "layer_types", None) or [FULL]
    if text_config.model_type == GEMMA3_MODEL_TYPE:
        return (
            config.model_type == GEMMA3_MODEL_TYPE  # not inside an image model
            and not getattr(text_config, "use_bidirectional_attention", False)
            and getattr(text_config, "attn_logit_softcapping", None) is None
            and set(layer_types) <= {FULL, SLIDING}
            and hasattr(decoder.rotary_emb, "layer_types")
        )
    return (
        text_config.model_type in LLAMA_STYLE_MODEL_TYPES
        and text_config.hidden_act == "silu"
        and getattr(text_config, "sliding_window", None) is None
        and all(layer_type == FULL for layer_type in layer_types)
    )


def base_layer(module: Any) -> Any:
    return module.get_base_layer() if hasattr(module, "get_base_layer") else module


def base_weight(module: Any) -> Tensor:
    return base_layer(module).weight.detach()


def stacked_bias(modules: tuple[Any, ...]) -> Tensor | None:
    """The parts' biases end to end (zeros for a part without one); None when none has one."""
    biases = [base_layer(module).bias for module in modules]
    if all(bias is None for bias in biases):
        return None
    weights = [base_weight(module) for module in modules]
    return torch.cat(
        [
            weight.new_zeros(weight.shape[0]) if bias is None else bias.detach()
            for weight, bias in zip(weights, biases, strict=True)
        ]
    )


def low_rank_parts(module: Any) -> tuple[Tensor, Tensor]:
    """(A [r, in], scale * B [out, r]) of the module's active adapter, differentiable; rank 0
    without one (or with adapters disabled)."""
    if ADAPTER in getattr(module, "lora_A", {}) and not getattr(module, "disable_adapters", False):
        a = module.lora_A[ADAPTER].weight
        b = module.lora_B[ADAPTER].weight * module.scaling[ADAPTER]
        return a, b.to(a.dtype)
    weight = base_weight(module)
    return weight.new_zeros(0, weight.shape[1]), weight.new_zeros(weight.shape[0], 0)


class Projection:
    """Several linear layers that read the same input, as one multiply by their stacked frozen
    base weights plus their biases and LoRA updates (block-diagonal B, so one low-rank
    product)."""

    def __init__(self, modules: tuple[Any, ...], autocast_dtype: torch.dtype | None) -> None:
        self.modules = modules
        weights = [base_weight(module) for module in modules]
        # a single layer keeps its own weight; only stacked layers need a copy
        stacked = weights[0] if len(weights) == 1 else torch.cat(weights)
        self.base = FrozenLinear(stacked, autocast_dtype)
        self.bias = stacked_bias(modules)
        self.a_t: Tensor | None = None  # [in, r]
        self.b_t: Tensor | None = None  # [r, out], scaled

    def adapter(self) -> tuple[Tensor, Tensor] | None:
        """(A [r, in], B [out, r]) stacked over the parts, differentiable; None for rank 0."""
        parts = [low_rank_parts(module) for module in self.modules]
        a = torch.cat([a for a, _ in parts])
        return (a, torch.block_diag(*[b for _, b in parts])) if a.shape[0] else None

    @torch.no_grad()
    def read_adapter(self) -> None:
        adapter = self.adapter()
        self.a_t = None if adapter is None else adapter[0].T.contiguous()
        self.b_t = None if adapter is None else adapter[1].T.contiguous()

    def __call__(self, x: Tensor) -> Tensor:
        """x [N, in] -> [N, out] with the adapter as last read, no autograd (sampling)."""
        out = self.with_bias(self.base(x))
        if self.a_t is None or self.b_t is None:
            return out
        # in place, so autocast does not cast: match the base output's dtype by hand
        return out.addmm_((x @ self.a_t).to(out.dtype), self.b_t.to(out.dtype))

    def trainable(self, x: Tensor) -> Tensor:
        """x [N, in] -> [N, out] with the adapter as it is now, under autograd."""
        out = self.with_bias(self.base(x))
        adapter = self.adapter()
        if adapter is None:
            return out
        a, b = adapter
        return torch.addmm(out, x @ a.T, b.T)

    def with_bias(self, out: Tensor) -> Tensor:
        return out if self.bias is None else out + self.bias.to(out.dtype)


@dataclass
class LayerWeights:
    input_norm: Any
    mlp_norm: Any  # before the MLP (Llama's post_attention_layernorm)
    q_norm: Any  # per-head RMSNorm on queries before the rotary embedding (Qwen3), or None
    k_norm: Any
    qkv: Projection  # hidden -> (heads + 2 * kv_heads) * head_dim
    o: Projection
    gate_up: Projection  # hidden -> 2 * intermediate
    down: Projection
    attention_out_norm: Any = None  # on the attention's output before the residual (Gemma)
    mlp_out_norm: Any = None  # on the MLP's output before the residual (Gemma)
    window: int | None = None  # a sliding-window layer's window, in tokens
    rotary_type: str | None = None  # the layer type its rotary embedding is computed for

    def projections(self) -> tuple[Projection, ...]:
        return (self.qkv, self.o, self.gate_up, self.down)

    def attention_residual(self, hidden: Tensor, attention_out: Tensor) -> Tensor:
        if self.attention_out_norm is not None:
            attention_out = self.attention_out_norm(attention_out)
        return hidden + attention_out

    def mlp_residual(self, hidden: Tensor, mlp_out: Tensor) -> Tensor:
        if self.mlp_out_norm is not None:
            mlp_out = self.mlp_out_norm(mlp_out)
        return hidden + mlp_out


class FusedDecoder:
    """Build once per model (packing the base weights takes ~0.3 s for 135M parameters). For
    sampling, call `read_adapter()` first: the adapter's weights change every step."""

    def __init__(self, decoder: Any, autocast_dtype: torch.dtype | None = None) -> None:
        """`autocast_dtype`: the dtype the policy autocasts to, if any; the base weights keep
        a copy in it."""
        config = decoder.config
        self.decoder = decoder
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scaling = decoder.layers[0].self_attn.scaling
        kv_size = self.kv_heads * self.head_dim
        self.qkv_sizes = [self.heads * self.head_dim, kv_size, kv_size]
        # Gemma 3's rotary embedding is computed per layer type (local and global bases)
        self.rotary_types: list[str] | None = getattr(decoder.rotary_emb, "layer_types", None)
        self.activation = decoder.layers[0].mlp.act_fn
        self.layers = [self._layer(layer, autocast_dtype) for layer in decoder.layers]

    def _layer(self, layer: Any, autocast_dtype: torch.dtype | None) -> LayerWeights:
        attention, mlp = layer.self_attn, layer.mlp

        def fuse(*modules: Any) -> Projection:
            return Projection(modules, autocast_dtype)

        # Gemma norms both halves' outputs too; there post_attention_layernorm is one of them
        sandwich = hasattr(layer, "pre_feedforward_layernorm")
        with torch.no_grad():
            return LayerWeights(
                input_norm=layer.input_layernorm,
                mlp_norm=layer.pre_feedforward_layernorm
                if sandwich
                else layer.post_attention_layernorm,
                q_norm=getattr(attention, "q_norm", None),
                k_norm=getattr(attention, "k_norm", None),
                qkv=fuse(attention.q_proj, attention.k_proj, attention.v_proj),
                o=fuse(attention.o_proj),
                gate_up=fuse(mlp.gate_proj, mlp.up_proj),
                down=fuse(mlp.down_proj),
                attention_out_norm=layer.post_attention_layernorm if sandwich else None,
                mlp_out_norm=layer.post_feedforward_layernorm if sandwich else None,
                window=getattr(attention, "sliding_window", None),
                rotary_type=attention.layer_type if self.rotary_types is not None else None,
            )

    def rotations(self, hidden: Tensor, position_ids: Tensor) -> dict[str | None, Any]:
        """(cos, sin) per rotary type: one for the whole model, or one per layer type."""
        rotary = self.decoder.rotary_emb
        if self.rotary_types is None:
            return {None: rotary(hidden, position_ids)}
        return {kind: rotary(hidden, position_ids, kind) for kind in self.rotary_types}

    def feed_forward(self, weights: LayerWeights, hidden: Tensor) -> Tensor:
        """The MLP half of a layer, residual included (sampling)."""
        gate, up = weights.gate_up(weights.mlp_norm(hidden)).chunk(2, dim=-1)
        return weights.mlp_residual(hidden, weights.down(self.activation(gate) * up))

    def queries_keys(
        self, weights: LayerWeights, q: Tensor, k: Tensor, leading: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        """Queries and keys split into heads [*leading, heads, head_dim], per-head normed
        where the model norms them."""
        q = q.view(*leading, self.heads, self.head_dim)
        k = k.view(*leading, self.kv_heads, self.head_dim)
        if weights.q_norm is not None:
            q, k = weights.q_norm(q), weights.k_norm(k)
        return q, k

    @torch.no_grad()
    def read_adapter(self) -> None:
        for layer in self.layers:
            for projection in layer.projections():
                projection.read_adapter()

    @torch.no_grad()
    def step(self, tokens: Tensor, position: Tensor, key_mask: Tensor | None, cache: Any) -> Tensor:
        """tokens [N], position [N, 1], key_mask [N, L] (1 = attend) or None, cache holding
        L - 1 positions -> last hidden state [N, d] after the final norm."""
        rows = tokens.shape[0]
        hidden = self.decoder.embed_tokens(tokens)  # [N, d]
        rotations = self.rotations(hidden, position)  # (cos, sin) [N, 1, head_dim] each
        biases = self.step_biases(key_mask, cache.layers[0].length + 1, hidden)
        group = self.heads // self.kv_heads
        for weights, cache_layer in zip(self.layers, cache.layers, strict=True):
            cos, sin = rotations[weights.rotary_type]
            qkv = weights.qkv(weights.input_norm(hidden))
            q, k, v = qkv.split(self.qkv_sizes, dim=-1)
            q, k = self.queries_keys(weights, q, k, (rows,))
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            keys, values = append(cache_layer, k, v.view(rows, self.kv_heads, self.head_dim))
            # grouped-query attention for one query position: [N, kv, group, d] x [N, kv, L, d]
            q = q.view(rows, self.kv_heads, group, self.head_dim)
            scores = (q @ keys.transpose(-1, -2)) * self.scaling
            bias = biases[weights.window]
            if bias is not None:
                scores = scores + bias
            attended = torch.softmax(scores.float(), dim=-1).to(values.dtype) @ values
            hidden = weights.attention_residual(hidden, weights.o(attended.reshape(rows, -1)))
            hidden = self.feed_forward(weights, hidden)
        return self.decoder.norm(hidden)

    def step_biases(
        self, key_mask: Tensor | None, length: int, like: Tensor
    ) -> dict[int | None, Tensor | None]:
        """Additive masks [N or 1, 1, 1, L] over the L cached keys of one decoding step, per
        window (None: the whole context); None where every key is attended to."""
        full = None
        if key_mask is not None:
            full = torch.zeros(key_mask.shape, dtype=like.dtype, device=like.device)
            full = full.masked_fill_(key_mask == 0, float("-inf"))[:, None, None, :]
        biases: dict[int | None, Tensor | None] = {None: full}
        for window in self.windows():
            if length <= window:
                biases[window] = full
                continue
            # the query is at cache index L - 1: keys at L - window and after are in reach
            near = torch.zeros((1, 1, 1, length), dtype=like.dtype, device=like.device)
            near[..., : length - window] = float("-inf")
            biases[window] = near if full is None else full + near
        return biases

    def windows(self) -> set[int]:
        return {weights.window for weights in self.layers if weights.window is not None}

    @torch.no_grad()
    def prefill(
        self, input_ids: Tensor, key_mask: Tensor | None, position_ids: Tensor, cache: Any
    ) -> Tensor:
        """The prompts [N, P] (left-padded where key_mask [N, P] has zeros; None when no row
        is padded) into an empty reserved cache -> last position's hidden state [N, d] after
        the final norm."""
        rows, width = input_ids.shape
        hidden = self.decoder.embed_tokens(input_ids).reshape(rows * width, -1)
        rotations = {
            kind: (cos[:, :, None], sin[:, :, None])  # [N, P, 1, head_dim]
            for kind, (cos, sin) in self.rotations(hidden, position_ids).items()
        }
        biases = self.prefill_biases(key_mask, width, hidden)
        group = self.heads // self.kv_heads
        for weights, cache_layer in zip(self.layers, cache.layers, strict=True):
            cos, sin = rotations[weights.rotary_type]
            q, k, v = weights.qkv(weights.input_norm(hidden)).split(self.qkv_sizes, dim=-1)
            q, k = self.queries_keys(weights, q, k, (rows, width))
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            v = v.view(rows, width, self.kv_heads, self.head_dim)
            keys, values = cache_layer.update(k.transpose(1, 2), v.transpose(1, 2))
            bias = biases[weights.window]
            attended = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                keys.repeat_interleave(group, dim=1),
                values.repeat_interleave(group, dim=1),
                attn_mask=None if bias is None else bias.to(q.dtype),
                is_causal=bias is None,
                scale=self.scaling,
            )  # [N, heads, P, head_dim]
            attended = attended.transpose(1, 2).reshape(rows * width, -1)
            hidden = weights.attention_residual(hidden, weights.o(attended))
            hidden = self.feed_forward(weights, hidden)
        return self.decoder.norm(hidden.view(rows, width, -1)[:, -1])

    def prefill_biases(
        self, key_mask: Tensor | None, width: int, like: Tensor
    ) -> dict[int | None, Tensor | None]:
        """Additive masks [N or 1, 1, P, P] over the prompts, per window (None: the whole
        context); None where plain causal attention is the mask."""
        biases: dict[int | None, Tensor | None] = {}
        device = like.device
        for window in {None, *self.windows()}:
            within = window is None or width <= window
            if key_mask is None and within:
                biases[window] = None
                continue
            allowed = torch.ones(width, width, dtype=torch.bool, device=device).tril()
            if not within:
                allowed = allowed.triu(1 - window)  # keys less than a window back
            allowed = allowed[None]
            if key_mask is not None:
                allowed = allowed & (key_mask[:, None, :] != 0)
                allowed |= torch.eye(width, dtype=torch.bool, device=device)  # padding
            bias = torch.zeros(allowed.shape, dtype=like.dtype, device=device)
            biases[window] = bias.masked_fill_(~allowed, float("-inf"))[:, None]
        return biases

    def forward(
        self, input_ids: Tensor, masks: Tensor | dict[str, Tensor], position_ids: Tensor
    ) -> Tensor:
        """The training forward: input_ids [S, L], additive attention masks [S, 1, L, L]
        (one, or one per layer type: `logprobs.decoder_masks`), position_ids [S, L] ->
        hidden states [S, L, d] after the final norm, differentiable with respect to the
        adapter."""
        sequences, width = input_ids.shape
        hidden = self.decoder.embed_tokens(input_ids).reshape(sequences * width, -1)
        rotations = {
            kind: (cos[:, :, None], sin[:, :, None])  # [S, L, 1, head_dim]
            for kind, (cos, sin) in self.rotations(hidden, position_ids).items()
        }
        group = self.heads // self.kv_heads
        for weights in self.layers:
            cos, sin = rotations[weights.rotary_type]
            normed = weights.input_norm(hidden)
            q, k, v = weights.qkv.trainable(normed).split(self.qkv_sizes, dim=-1)
            q, k = self.queries_keys(weights, q, k, (sequences, width))
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            v = v.view(sequences, width, self.kv_heads, self.head_dim)
            attended = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2).repeat_interleave(group, dim=1),
                v.transpose(1, 2).repeat_interleave(group, dim=1),
                attn_mask=layer_mask(masks, weights).to(q.dtype),
                scale=self.scaling,
            )  # [S, heads, L, head_dim]
            attended = attended.transpose(1, 2).reshape(sequences * width, -1)
            hidden = weights.attention_residual(hidden, weights.o.trainable(attended))
            normed = weights.mlp_norm(hidden)
            gate, up = weights.gate_up.trainable(normed).chunk(2, dim=-1)
            hidden = weights.mlp_residual(
                hidden, weights.down.trainable(self.activation(gate) * up)
            )
        return self.decoder.norm(hidden).view(sequences, width, -1)


def layer_mask(masks: Tensor | dict[str, Tensor], weights: LayerWeights) -> Tensor:
    """The layer's mask: the one mask, or its layer type's."""
    if not isinstance(masks, dict):
        return masks
    return masks[FULL if weights.window is None else SLIDING]


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
