"""Gradient checkpointing, which job placement turns on when only then a job fits: the
training forward recomputes the blocks in the backward pass and gives the same gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from worker.trainer.logprobs import pack, score_packed
from worker.trainer.models import load_policy

PROMPTS = [[1, 5, 9, 13], [2, 6, 10]]
COMPLETIONS = [(0, 0, [20, 21, 22]), (1, 0, [23, 24]), (2, 1, [25, 26, 27, 28])]


def _gradients(model_dir: Path, checkpointing: bool) -> tuple[Any, int, dict[str, torch.Tensor]]:
    """The policy, how often its first block's attention ran, and the LoRA gradients of one
    backward."""
    torch.manual_seed(0)
    policy = load_policy(
        model_dir, 4, 8, device="cpu", precision="fp32", gradient_checkpointing=checkpointing
    )
    for name, parameter in policy.model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero; a non-zero B makes A's gradient non-zero
            torch.nn.init.normal_(parameter, std=0.05, generator=torch.Generator().manual_seed(1))
    policy.model.train()
    runs = []
    policy.decoder.layers[0].self_attn.register_forward_pre_hook(lambda *_: runs.append(1))
    packed = pack(PROMPTS, COMPLETIONS, policy.pad_id, policy.device)
    score_packed(policy, packed).logprobs.sum().backward()
    return (
        policy,
        len(runs),
        {
            name: parameter.grad.clone()
            for name, parameter in policy.model.named_parameters()
            if parameter.requires_grad and parameter.grad is not None
        },
    )


def test_checkpointed_gradients_equal_the_plain_ones(tiny_model_dir: Path) -> None:
    _, plain_runs, plain = _gradients(tiny_model_dir, checkpointing=False)
    policy, checkpointed_runs, checkpointed = _gradients(tiny_model_dir, checkpointing=True)
    assert policy.gradient_checkpointing and policy.fused_model() is None
    # the block ran again in the backward pass (the plain policy may run fused layers instead)
    assert checkpointed_runs == 2 and plain_runs <= 1
    assert plain.keys() == checkpointed.keys() and len(plain) > 0
    for name, gradient in plain.items():
        # the plain policy may sum in another order (fused layers): float32 rounding of a few
        # 1e-6 on near-zero entries, so the absolute tolerance follows each tensor's scale
        scale = gradient.abs().max().item()
        torch.testing.assert_close(checkpointed[name], gradient, rtol=1e-4, atol=1e-4 * scale)
