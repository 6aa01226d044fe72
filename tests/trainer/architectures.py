"""Tiny random models of each supported architecture, with the SmolLM2 tokenizer and chat
template, built from their transformers configs.

Each config switches on what sets its architecture apart at a size where it shows in a few
tokens: Llama 3's rope scaling, Qwen2's q/k/v biases, Qwen3's q/k norms and explicit head_dim,
Gemma's soft-capping and sliding-window layers (a window of 8 tokens, shorter than any chat
prompt), Phi-3's fused projections and Mistral's sliding window. Norm weights and biases,
which transformers initialises to constants, are drawn at random so that a forward that
dropped one would not match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.atomic import atomic_directory
from worker.trainer.models import file_lock, is_model_dir
from worker.trainer.tiny import LM_HEAD_STD, TINY_SEED, load_smollm2_tokenizer

WINDOW = 8
SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}


def llama3(**ids: Any) -> Any:
    from transformers import LlamaConfig

    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    return LlamaConfig(**SHAPE, **ids, rope_parameters=rope)


def qwen2(**ids: Any) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(**SHAPE, **ids)


def qwen3(**ids: Any) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(**SHAPE, **ids, head_dim=24)


def gemma2(**ids: Any) -> Any:
    from transformers import Gemma2Config

    return Gemma2Config(
        **SHAPE,
        **ids,
        head_dim=16,
        sliding_window=WINDOW,
        attn_logit_softcapping=2.0,
        final_logit_softcapping=10.0,
        query_pre_attn_scalar=24,
    )


def gemma3(**ids: Any) -> Any:
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        **SHAPE,
        **ids,
        head_dim=16,
        sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention"],
        final_logit_softcapping=10.0,
        query_pre_attn_scalar=24,
    )


def phi3(**ids: Any) -> Any:
    from transformers import Phi3Config

    return Phi3Config(**SHAPE, **ids)


def mistral(**ids: Any) -> Any:
    from transformers import MistralConfig

    return MistralConfig(**SHAPE, **ids, sliding_window=WINDOW)


CONFIGS = {
    "llama3": llama3,
    "qwen2": qwen2,
    "qwen3": qwen3,
    "gemma2": gemma2,
    "gemma3": gemma3,
    "phi3": phi3,
    "mistral": mistral,
}
ARCHITECTURES = list(CONFIGS)


def build_tiny_architecture(name: str, out_dir: Path) -> Path:
    """Write the tiny random `name` model to `out_dir` (reused when complete) and return it."""
    import torch
    from transformers import AutoModelForCausalLM

    if is_model_dir(out_dir):
        return out_dir
    with file_lock(out_dir.parent / f".{out_dir.name}.lock"):
        if is_model_dir(out_dir):
            return out_dir
        tokenizer = load_smollm2_tokenizer()
        config = CONFIGS[name](
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(TINY_SEED)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            torch.nn.init.normal_(model.get_output_embeddings().weight, std=LM_HEAD_STD)
            for parameter in model.parameters():
                if parameter.ndim == 1:  # norm weights and biases
                    parameter.add_(torch.randn_like(parameter), alpha=0.2)
        with atomic_directory(out_dir) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    return out_dir
