"""The memory estimate of a job and where it is placed, checked against known sizes and
hand-computed figures."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.model_shape import ModelShape, shape_from_config
from app.tables import Worker
from app.workers.memory import GIB, JobSize, estimate_memory
from app.workers.placement import DoesNotFit, job_size, place_job
from app.workers.queues import job_tier, served_tier, worker_queues

# the published configs of the two packaged models (their GGUF headers give the same sizes)
SMOLLM2_CONFIG: dict[str, Any] = {
    "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
    "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "tie_word_embeddings": True,
}  # fmt: skip
GEMMA3_270M_CONFIG: dict[str, Any] = {
    "model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 640,
    "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
    "num_key_value_heads": 1, "head_dim": 256, "tie_word_embeddings": True,
}  # fmt: skip
# parameter counts of the released checkpoints
SMOLLM2_PARAMETERS = 134_515_008
GEMMA3_270M_PARAMETERS = 268_098_176


def test_parameter_counts_match_the_released_models() -> None:
    for config, known in (
        (SMOLLM2_CONFIG, SMOLLM2_PARAMETERS),
        (GEMMA3_270M_CONFIG, GEMMA3_270M_PARAMETERS),
    ):
        shape = shape_from_config(config)
        # the estimate counts four norms per block whatever the architecture has
        assert abs(shape.parameters - known) / known < 0.0005


def test_parameter_and_lora_counts_match_transformers() -> None:
    """A model built from the config (on the meta device: no memory) has as many weights, and
    peft's adapter on every linear layer as many as the estimate counts."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    from worker.trainer.models import LORA_TARGET_MODULES

    for config in (SMOLLM2_CONFIG, GEMMA3_270M_CONFIG):
        settings = {k: v for k, v in config.items() if k != "model_type"}
        hf_config = AutoConfig.for_model(config["model_type"], **settings)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(hf_config)
        counted = sum(parameter.numel() for parameter in model.parameters())
        shape = shape_from_config(config)
        assert abs(shape.parameters - counted) / counted < 0.0005
        lora = get_peft_model(model, LoraConfig(r=16, target_modules=LORA_TARGET_MODULES))
        trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
        assert shape.lora_parameters(16) == trainable


TINY = ModelShape(
    vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
    num_kv_heads=2, head_dim=16, tied_embeddings=False,
)  # fmt: skip


def test_each_part_of_the_estimate_by_hand() -> None:
    size = JobSize(batch_size=2, group_size=4, completion_tokens=8, lora_rank=4, prompt_tokens=16)
    fp32 = estimate_memory(TINY, size, bf16=False)
    # weights: embeddings and head 2 x 64k, per block q/o 2 x 4096 + k/v 2 x 2048 + MLP
    # 3 x 8192 + norms 256, and the final norm 64
    parameters = 2 * 64_000 + 2 * (8192 + 4096 + 24576 + 256) + 64
    assert TINY.parameters == parameters
    assert fp32.weights == parameters * 4
    # a bf16 CPU keeps fp32 weights and a bf16 copy; a GPU loads them in bf16 alone
    assert estimate_memory(TINY, size, bf16=True).weights == parameters * 6
    assert estimate_memory(TINY, size, bf16=True, device_kind="cuda").weights == parameters * 2
    # LoRA: rank 4 x (in + out) for each of the seven linears, fp32 + grad + two moments
    lora = 2 * 4 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 2 + (128 + 64))
    assert fp32.adapter_and_optimizer == lora * 16
    # the sampling cache: 8 sequences of 24 tokens, keys and values of 2 layers x 2 heads x 16,
    # and one row of logits per sequence
    assert fp32.sampling_cache == 8 * 24 * (2 * 2 * 2 * 16 * 4) + 8 * 1000 * 4
    # activations: 2 packed sequences of 16 + 4 x 8 = 48 tokens
    saved = 4 * 64 + 3 * 64 + 2 * 32 + 4 * 128 + 7 * 4
    per_block = 2 * 48 * saved * 4 + 2 * 4 * 48 * 48 * 4
    assert fp32.training_activations == 2 * per_block + 2 * 4 * 8 * 1000 * 4
    checkpointed = estimate_memory(TINY, size, bf16=False, gradient_checkpointing=True)
    assert checkpointed.training_activations == (
        2 * 2 * 48 * 64 * 4 + per_block + 2 * 4 * 8 * 1000 * 4
    )
    peak = max(fp32.training_activations, fp32.sampling_cache)
    assert fp32.total == fp32.weights + fp32.adapter_and_optimizer + peak + fp32.runtime


def test_smollm2_with_the_default_hyperparameters_needs_a_few_gib() -> None:
    size = job_size("reinforcement", {})
    assert (size.batch_size, size.group_size, size.completion_tokens, size.lora_rank) == (
        4, 8, 64, 16,
    )  # fmt: skip
    estimate = estimate_memory(shape_from_config(SMOLLM2_CONFIG), size, bf16=False)
    # 538 MB of fp32 weights; four packed sequences of 256 + 8 x 64 tokens in 30 blocks
    # (2.8 GiB of saved values and 2.3 GiB of attention probabilities) dominate
    assert 0.5 * GIB < estimate.weights < 0.51 * GIB
    assert 6 * GIB < estimate.training_activations < 6.5 * GIB
    assert 7 * GIB < estimate.total < 7.5 * GIB
    assert "weights 513 MiB" in estimate.describe()


def test_gradient_checkpointing_saves_most_activations_of_a_long_job() -> None:
    size = job_size("reinforcement", {"group_size": 16, "max_completion_tokens": 512})
    shape = shape_from_config(GEMMA3_270M_CONFIG)
    plain = estimate_memory(shape, size, bf16=True)
    checkpointed = estimate_memory(shape, size, bf16=True, gradient_checkpointing=True)
    assert checkpointed.training_activations < plain.training_activations / 5
    assert checkpointed.total < plain.total


def test_tiers_round_a_worker_down_and_a_job_up() -> None:
    assert served_tier(24 * GIB) == 24 and served_tier(23 * GIB) == 16
    assert served_tier(GIB // 2) is None
    assert job_tier(17 * GIB) == 24 and job_tier(GIB) == 1
    assert worker_queues("q", "cpu", 5 * GIB) == [
        "q.cpu.1g",
        "q.cpu.1.5g",
        "q.cpu.2g",
        "q.cpu.3g",
        "q.cpu.4g",
    ]


def _worker(name: str, kind: str, gib: float, bf16: bool = False) -> Worker:
    return Worker(
        name=name,
        device_kind=kind,
        device_name=kind,
        memory_bytes=int(gib * GIB),
        bf16=bf16,
        last_seen=time.time(),
    )


def test_placement_prefers_cuda_then_checkpointing_then_refuses() -> None:
    shape = shape_from_config(SMOLLM2_CONFIG)
    size = job_size("reinforcement", {})
    placed = place_job(
        shape, size, [_worker("cpu", "cpu", 64), _worker("gpu", "cuda", 80, True)], "q"
    )
    assert placed.queue is not None and placed.queue.startswith("q.cuda.")
    assert not placed.gradient_checkpointing

    long_job = job_size("reinforcement", {"group_size": 32, "max_completion_tokens": 1024})
    plain = estimate_memory(shape, long_job, bf16=False)
    checkpointed = estimate_memory(shape, long_job, bf16=False, gradient_checkpointing=True)
    tier = job_tier(checkpointed.total)
    assert tier is not None and job_tier(plain.total) != tier
    fits_only_checkpointed = _worker("small", "cpu", tier)
    placed = place_job(shape, long_job, [fits_only_checkpointed], "q")
    assert placed.gradient_checkpointing and placed.queue == f"q.cpu.{tier:g}g"
    assert "Gradient checkpointing is on so that it fits" in placed.message

    with pytest.raises(DoesNotFit, match=r"needs about .* GiB \(weights .*the largest is tiny"):
        place_job(shape, long_job, [_worker("tiny", "cpu", 1)], "q")


def test_without_registered_workers_the_job_is_not_refused() -> None:
    placed = place_job(shape_from_config(SMOLLM2_CONFIG), job_size("supervised", {}), [], "q")
    assert placed.queue is None and "No worker has registered yet" in placed.message
    unknown = place_job(None, job_size("supervised", {}), [_worker("w", "cpu", 1)], "q")
    assert unknown.queue is None and "could not be estimated" in unknown.message


# LLaVA 1.5 7B: a CLIP ViT-L/14 at 336 pixels before Llama 2 7B
LLAVA_15_7B_CONFIG: dict[str, Any] = {
    "model_type": "llava", "image_token_index": 32000, "projector_hidden_act": "gelu",
    "text_config": {"model_type": "llama", "vocab_size": 32064, "hidden_size": 4096,
                    "intermediate_size": 11008, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 32},
    "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024,
                      "intermediate_size": 4096, "num_hidden_layers": 24,
                      "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
                      "projection_dim": 768},
}  # fmt: skip


def test_a_vision_models_count_includes_its_vision_tower() -> None:
    import torch
    from transformers import AutoConfig, LlavaForConditionalGeneration

    settings = {k: v for k, v in LLAVA_15_7B_CONFIG.items() if k != "model_type"}
    hf_config = AutoConfig.for_model("llava", **settings)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(hf_config)
    counted = sum(parameter.numel() for parameter in model.parameters())
    shape = shape_from_config(LLAVA_15_7B_CONFIG)
    assert shape.extra_parameters > 300_000_000
    assert abs(shape.parameters - counted) / counted < 0.001
