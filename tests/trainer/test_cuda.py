"""The trainer and the inference pool on a CUDA GPU: bf16 base weights, SDPA attention, the same
code as on the CPU. Marked `cuda`: skipped without a GPU (scripts/gpu_check.sh runs them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from worker.inference.pool import ModelPool
from worker.inference.sampling import SamplingParams, sample
from worker.trainer.job import train
from worker.trainer.logprobs import pack, score_packed
from worker.trainer.models import load_policy, weights_dtype
from worker.trainer.sampling import decoding
from worker.trainer.sampling import sample as sample_rollout

from .architectures import ARCHITECTURES, build_tiny_architecture
from .reporting import RecordingReporter, RecordingStore
from .test_architectures import prompt_batch, spec_for


def test_base_weights_load_in_the_autocast_dtype_on_cuda_only() -> None:
    assert weights_dtype("cuda", torch.bfloat16) == torch.bfloat16
    assert weights_dtype("cuda", None) == torch.float32
    assert weights_dtype("cpu", torch.bfloat16) == torch.float32


@pytest.fixture(scope="module")
def architecture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("architectures")


def cuda_policy(root: Path, name: str) -> Any:
    torch.manual_seed(0)
    policy = load_policy(build_tiny_architecture(name, root / name), 4, 8, "cuda", "auto")
    with torch.no_grad():
        for parameter_name, parameter in policy.model.named_parameters():
            if "lora_B" in parameter_name:
                parameter.normal_(0, 0.05)
    return policy


@pytest.mark.cuda
def test_the_policy_runs_bf16_weights_with_sdpa(tiny_model_dir: Path) -> None:
    policy = load_policy(tiny_model_dir, 4, 8, "cuda", "auto")
    assert policy.autocast_dtype == torch.bfloat16
    assert policy.model.config._attn_implementation == "sdpa"
    frozen = [p for p in policy.model.parameters() if not p.requires_grad]
    assert all(p.dtype == torch.bfloat16 and p.is_cuda for p in frozen)
    assert all(p.dtype == torch.float32 for p in policy.trainable_parameters())


@pytest.mark.cuda
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_training_logprobs_on_cuda_match_the_models_forward(
    architecture_root: Path, name: str
) -> None:
    policy = cuda_policy(architecture_root, name)
    prompts = prompt_batch(policy)
    generator = torch.Generator(device="cuda").manual_seed(1)
    with decoding(policy) as fast:
        rollout = sample_rollout(policy, prompts, 2, 6, 1.0, 1.0, generator, fast=fast)
    rows = [(row, row // 2, tokens) for row, tokens in enumerate(rollout.completions())]
    packed = pack(prompts.token_lists(), rows, policy.pad_id, policy.device)
    with policy.autocast():
        scores = score_packed(policy, packed)
        scores.logprobs.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in policy.trainable_parameters())
    prompt_ids = prompts.token_lists()
    with torch.no_grad(), policy.autocast():
        for row, prompt_index, tokens in rows:
            prompt = prompt_ids[prompt_index]
            ids = torch.tensor([prompt + tokens], device="cuda")
            logits = policy.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
            direct = torch.log_softmax(logits, -1)[torch.arange(len(tokens)), tokens]
            ours = scores.logprobs[packed.rows == row]
            # bf16 matmuls in a different order: equal to bf16's precision, not bit for bit
            assert (ours - direct).abs().max() < 0.1, (name, row)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_one_rft_step_on_cuda(architecture_root: Path, name: str, tmp_path: Path) -> None:
    base_dir = build_tiny_architecture(name, architecture_root / name)
    spec = replace(spec_for(base_dir, tmp_path), device="cuda", precision="auto")
    result = train(spec, RecordingReporter(), RecordingStore(tmp_path / "checkpoints"))
    assert result.status == "completed" and result.steps_done == 1
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


@pytest.mark.cuda
def test_the_inference_pool_puts_models_on_the_gpu(tiny_model_dir: Path) -> None:
    pool = ModelPool(max_bases=1)
    with pool.activate(tiny_model_dir, None) as loaded:
        assert loaded.model.device.type == "cuda"
        prompt_ids = loaded.vocab.encode_chat([{"role": "user", "content": "Hi"}])
        params = SamplingParams(max_tokens=8, temperature=1.0, n=2, seed=3)
        first = sample(loaded.model, loaded.vocab, prompt_ids, params)
        again = sample(loaded.model, loaded.vocab, prompt_ids, params)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
