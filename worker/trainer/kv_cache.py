"""A KV cache for sampling that appends in place.

Transformers' DynamicCache concatenates each new token's keys and values onto the whole cache,
copying every layer's cache once per decoded token. Here each layer writes into a buffer
reserved for the prompt plus the completion budget and hands attention a view of the filled
part. For sampling only (no autograd through the in-place writes).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer


class ReservedLayer(DynamicLayer):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, head_dim = key_states.shape
        shape = (batch, heads, self.capacity, head_dim)
        self.device = key_states.device
        self.key_buffer = key_states.new_empty(shape)
        self.value_buffer = value_states.new_empty(
            (batch, heads, self.capacity, value_states.shape[-1])
        )
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.key_buffer.shape[-2]:
            raise ValueError(f"KV cache of {self.capacity} tokens is full")
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self._refresh()
        return self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]

    def _refresh(self) -> None:
        self.keys = self.key_buffer[:, :, : self.length]
        self.values = self.value_buffer[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
        self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
        self._refresh()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_buffer = self.key_buffer[indices]
        self.value_buffer = self.value_buffer[indices]
        self._refresh()


def reserved_cache(config: Any, capacity: int) -> Cache:
    """A cache for `capacity` tokens per row across every decoder layer of `config`."""
    layers = config.get_text_config(decoder=True).num_hidden_layers
    return Cache(layers=[ReservedLayer(capacity) for _ in range(layers)])


def sampling_cache(config: Any, capacity: int, fused: bool = False) -> Cache | None:
    """A reserved cache when every layer attends to the whole context, or for the fused
    decoder (which masks sliding-window layers itself); else None (the model's default cache,
    which knows sliding-window and other layer types)."""
    text_config = config.get_text_config(decoder=True)
    layer_types = getattr(text_config, "layer_types", None) or ["full_attention"]
    if not fused and any(layer_type != "full_attention" for layer_type in layer_types):
        return None
    return reserved_cache(config, capacity)
