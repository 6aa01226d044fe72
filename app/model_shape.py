"""A base model's sizes, read from its config.json or its GGUF header (no torch).

Enough to count parameters, LoRA parameters, activations and the KV cache of a decoder-only
transformer with gated MLPs (Llama, Qwen, Gemma, Mistral, Phi-3): the memory estimate needs no
more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.gguf_header import GGUFHeader, read_gguf_header


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tied_embeddings: bool
    # weights beside the decoder: a vision model's vision tower and projector (frozen)
    extra_parameters: int = 0

    @property
    def layer_linears(self) -> tuple[tuple[int, int], ...]:
        """(in, out) features of each linear layer of one decoder block: q, k, v, o, gate, up,
        down (the modules LoRA wraps)."""
        hidden, inner = self.hidden_size, self.intermediate_size
        q_width, kv_width = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        return (
            (hidden, q_width),
            (hidden, kv_width),
            (hidden, kv_width),
            (q_width, hidden),
            (hidden, inner),
            (hidden, inner),
            (inner, hidden),
        )

    @property
    def parameters(self) -> int:
        """Weights of the embeddings, the blocks (norms included) and the output layer."""
        block = sum(fan_in * fan_out for fan_in, fan_out in self.layer_linears)
        block += 4 * self.hidden_size  # up to four RMS norms per block
        embeddings = self.vocab_size * self.hidden_size
        head = 0 if self.tied_embeddings else embeddings
        decoder = embeddings + head + self.num_layers * block + self.hidden_size
        return decoder + self.extra_parameters

    def lora_parameters(self, rank: int) -> int:
        """A and B of a rank-`rank` adapter on every linear layer of every block."""
        per_block = sum(rank * (fan_in + fan_out) for fan_in, fan_out in self.layer_linears)
        return self.num_layers * per_block


def shape_from_config(config: dict[str, Any]) -> ModelShape:
    """From a Hugging Face config.json (a multimodal one's `text_config` where present)."""
    text = config.get("text_config") or config
    hidden = int(text["hidden_size"])
    heads = int(text["num_attention_heads"])
    return ModelShape(
        vocab_size=int(text.get("vocab_size") or config["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(text.get("intermediate_size") or 4 * hidden),
        num_layers=int(text["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(text.get("num_key_value_heads") or heads),
        head_dim=int(text.get("head_dim") or hidden // heads),
        tied_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings"))),
        extra_parameters=_vision_parameters(config, hidden),
    )


def _vision_parameters(config: dict[str, Any], text_hidden: int) -> int:
    """About the weights of a vision model's encoder (attention and MLP of each layer) and its
    projector into the language model (LLaVA's two layers); 0 for a text model."""
    vision = config.get("vision_config")
    if not isinstance(vision, dict) or "hidden_size" not in vision:
        return 0
    hidden = int(vision["hidden_size"])
    inner = int(vision.get("intermediate_size") or 4 * hidden)
    layers = int(vision.get("num_hidden_layers") or 0)
    projector = hidden * text_hidden + text_hidden * text_hidden
    return layers * (4 * hidden * hidden + 2 * hidden * inner) + projector


def shape_from_gguf(header: GGUFHeader) -> ModelShape:
    """From a GGUF header: `<arch>.*` keys, the token list's length, and whether an output
    layer of its own is stored (`output.weight`; without one the head is the embeddings)."""
    metadata = header.metadata
    arch = metadata["general.architecture"]

    def key(name: str) -> Any:
        return metadata[f"{arch}.{name}"]

    hidden, heads = int(key("embedding_length")), int(key("attention.head_count"))
    kv_heads = metadata.get(f"{arch}.attention.head_count_kv", heads)
    return ModelShape(
        vocab_size=int(metadata.get(f"{arch}.vocab_size") or metadata["tokenizer.ggml.tokens"]),
        hidden_size=hidden,
        intermediate_size=int(key("feed_forward_length")),
        num_layers=int(key("block_count")),
        num_heads=heads,
        num_kv_heads=int(kv_heads),
        head_dim=int(metadata.get(f"{arch}.attention.key_length") or hidden // heads),
        tied_embeddings="output.weight" not in header.tensor_names,
    )


def read_shape(config_json: Path) -> ModelShape:
    return shape_from_config(json.loads(config_json.read_text()))


def read_gguf_shape(paths: Path | tuple[Path, ...]) -> ModelShape:
    return shape_from_gguf(read_gguf_header(paths))
