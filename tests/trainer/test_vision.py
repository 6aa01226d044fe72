"""Prompts with images on a LLaVA-style model: the training forward equals the model's own
forward with the images (log-probs and gradients), sampling with a seed equals `generate`
with the same images, the image changes what the model says, and RFT runs on image rows and
saves an adapter of the language model alone that peft loads."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.vision_models import build_tiny_vision_model, image_row
from worker.trainer.job import train
from worker.trainer.logprobs import score_packed
from worker.trainer.models import load_policy
from worker.trainer.sampling import PromptBatch, decoding, sample
from worker.trainer.vision import encode_prompts

from .reporting import RecordingReporter, RecordingStore
from .test_architectures import (
    NEVER_ENDS,
    assert_packed_forward_equals_the_models,
    inverse_cdf,
    spec_for,
)

RED, BLUE = (220, 30, 30), (30, 30, 220)


@pytest.fixture(scope="module")
def vision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vision_model(tmp_path_factory.mktemp("vision") / "tiny-vision")


@pytest.fixture
def policy(vision_dir: Path) -> Any:
    torch.manual_seed(0)
    policy = load_policy(vision_dir, 4, 8, "cpu", "fp32")
    with torch.no_grad():
        for name, parameter in policy.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    return policy


def rows() -> list[dict[str, Any]]:
    """A red and a blue image with the same question, and a prompt without an image."""
    return [
        image_row("Which colour is this?", RED),
        image_row("Which colour is this?", BLUE),
        {"messages": [{"role": "user", "content": "And without a picture?"}]},
    ]


def prompt_batch(policy: Any) -> PromptBatch:
    ids, images = encode_prompts(policy, rows())
    return PromptBatch.from_ids(ids, policy.pad_id, policy.device, images)


def sampled(policy: Any, prompts: PromptBatch, seed: int, **options: Any) -> Any:
    generator = torch.Generator().manual_seed(seed)
    settings = {"group_size": 2, "max_tokens": 5, "temperature": 1.0, "top_p": 1.0} | options
    with decoding(policy) as fast:
        return sample(
            policy, prompts, generator=generator, eos_ids=NEVER_ENDS, fast=fast, **settings
        )


def test_each_image_becomes_its_placeholder_tokens_and_pixels(policy: Any) -> None:
    ids, images = encode_prompts(policy, rows())
    assert images is not None
    assert [None if pixels is None else tuple(pixels.shape) for pixels in images] == [
        (1, 3, 28, 28),
        (1, 3, 28, 28),
        None,
    ]
    # four patches of 14x14 pixels: four placeholders where the image part was
    assert [row.count(policy.image_token_id) for row in ids] == [4, 4, 0]
    assert ids[0] != ids[1] or not torch.equal(images[0], images[1])


def test_the_image_changes_the_answer(policy: Any) -> None:
    prompts = prompt_batch(policy)
    rollout = sampled(policy, prompts, seed=2, temperature=1.0)
    red, blue = rollout.logprobs[0], rollout.logprobs[2]
    # same text, same seed, different pixels: different distributions
    assert not torch.allclose(red, blue)


def test_training_logprobs_and_gradients_equal_the_models_forward(policy: Any) -> None:
    prompts = prompt_batch(policy)
    rollout = sampled(policy, prompts, seed=1)
    completions = rollout.completions()
    assert all(policy.image_token_id not in tokens for tokens in completions)
    rows_ = [(row, row // 2, tokens) for row, tokens in enumerate(completions)]
    packed = assert_packed_forward_equals_the_models(policy, prompts, rows_)
    # and what sampling recorded is what training scores, at the sampling temperature
    at_one = score_packed(policy, packed, temperature=1.0).logprobs.detach()
    recorded = rollout.logprobs[packed.rows, packed.columns]
    assert torch.allclose(at_one, recorded, atol=1e-4)


def test_sampling_with_a_seed_equals_generate_with_the_image(
    policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import GenerationConfig

    ids, images = encode_prompts(policy, rows()[:1])
    prompts = PromptBatch.from_ids(ids, policy.pad_id, policy.device, images)
    options = {"group_size": 2, "max_tokens": 6, "temperature": 0.5, "top_p": 0.9}
    ours = sampled(policy, prompts, seed=5, **options)

    monkeypatch.setattr(torch, "multinomial", inverse_cdf(torch.Generator().manual_seed(5)))
    config = GenerationConfig(
        do_sample=True,
        temperature=0.5,
        top_p=0.9,
        top_k=0,
        max_new_tokens=6,
        min_new_tokens=6,
        num_return_sequences=2,
        pad_token_id=policy.pad_id,
        eos_token_id=policy.tokenizer.eos_token_id,
    )
    assert images is not None
    with torch.no_grad(), policy.merged():
        generated = policy.model.generate(
            input_ids=prompts.input_ids,
            attention_mask=prompts.attention_mask,
            pixel_values=images[0],
            generation_config=config,
        )
    completions = generated[:, prompts.input_ids.shape[1] :]
    assert completions.tolist() == ours.completion_ids.tolist()


def test_one_rft_step_on_image_rows_saves_a_language_model_adapter(
    vision_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    rows_ = [image_row(f"Colour {i}?", RED if i % 2 else BLUE, letter="e") for i in range(4)]
    spec = replace(spec_for(vision_dir, tmp_path, rows_), samples_per_step=8)
    reporter = RecordingReporter()
    result = train(spec, reporter, RecordingStore(tmp_path / "checkpoints"))
    assert result.status == "completed" and result.steps_done == 1
    assert reporter.steps[0]["frac_reward_zero_std"] < 1.0, "the step needs a group with signal"
    # the samples a user reads show where each image was
    _, _, kept = next(entry for entry in reporter.samples if entry[1] == "train")
    assert re.fullmatch(r"Colour \d\?\[image\]", kept[0]["prompt"][0]["content"])

    base = AutoModelForImageTextToText.from_pretrained(vision_dir, dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, str(result.adapter_dir))
    adapted = {key.split(".lora_")[0] for key in loaded.state_dict() if ".lora_" in key}
    assert adapted and all(".language_model." in key for key in adapted)
    assert not any("vision_tower" in key or "projector" in key for key in adapted)
