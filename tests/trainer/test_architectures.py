"""Every supported architecture through the trainer: the training forward's log-probs and
gradients equal the model's own forward, sampling with a seed equals `generate` with the same
processors and the same draw, and one RFT step saves an adapter that peft loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from app.graders import GraderConfig
from app.jobs.hyperparameters import resolve_hyperparameters
from worker.trainer.data import encode_prompt
from worker.trainer.job import train
from worker.trainer.logprobs import pack, score_packed
from worker.trainer.models import load_policy
from worker.trainer.sampling import PromptBatch, decoding, sample
from worker.trainer.spec import TrainSpec

from .architectures import ARCHITECTURES, build_tiny_architecture
from .conftest import CONTAINS_E, question_rows
from .reporting import RecordingReporter, RecordingStore

# the architectures the fused decoder runs; the others go through the model's own forward
FUSED = {"llama3", "qwen2", "qwen3", "gemma3"}
PROMPTS = ["Hi", "What is the capital city of France, and why is it there?"]


@pytest.fixture(scope="session")
def architecture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("architectures")


def model_dir(root: Path, name: str) -> Path:
    return build_tiny_architecture(name, root / name)


def policy_with_adapter(root: Path, name: str) -> Any:
    """The tiny `name` model under LoRA with a trained-looking adapter (B is zero at first)."""
    torch.manual_seed(0)
    policy = load_policy(model_dir(root, name), 4, 8, "cpu", "fp32")
    with torch.no_grad():
        for parameter_name, parameter in policy.model.named_parameters():
            if "lora_B" in parameter_name:
                parameter.normal_(0, 0.05)
    return policy


def prompt_batch(policy: Any, texts: list[str] = PROMPTS) -> PromptBatch:
    rows = [{"messages": [{"role": "user", "content": text}]} for text in texts]
    ids = [encode_prompt(policy.tokenizer, row) for row in rows]
    return PromptBatch.from_ids(ids, policy.pad_id, policy.device)


NEVER_ENDS = torch.tensor([-1])  # no token ends a completion: every row runs the full budget


def sampled(policy: Any, prompts: PromptBatch, seed: int, **options: Any) -> Any:
    generator = torch.Generator().manual_seed(seed)
    settings = {"group_size": 2, "max_tokens": 6, "temperature": 1.0, "top_p": 1.0} | options
    with decoding(policy) as fast:
        return sample(
            policy, prompts, generator=generator, eos_ids=NEVER_ENDS, fast=fast, **settings
        )


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_fused_decoder_runs_the_llama_style_architectures(
    architecture_root: Path, name: str
) -> None:
    policy = load_policy(model_dir(architecture_root, name), 4, 8, "cpu", "fp32")
    assert (policy.fused_model() is not None) == (name in FUSED)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_training_logprobs_and_gradients_equal_the_models_forward(
    architecture_root: Path, name: str
) -> None:
    policy = policy_with_adapter(architecture_root, name)
    prompts = prompt_batch(policy)
    rollout = sampled(policy, prompts, seed=1)
    rows = [(row, row // 2, tokens) for row, tokens in enumerate(rollout.completions())]
    assert_packed_forward_equals_the_models(policy, prompts, rows)


def assert_packed_forward_equals_the_models(
    policy: Any, prompts: PromptBatch, rows: list[tuple[int, int, list[int]]]
) -> Any:
    """The packed training forward's log-probs (at temperature 0.7) and gradients equal the
    model's own forward on each prompt and completion (with the prompt's images, where it has
    some); returns the packed batch."""
    weights = torch.linspace(-1, 1, len(rows))
    prompt_ids = prompts.token_lists()
    packed = pack(prompt_ids, rows, policy.pad_id, "cpu", prompts.images)
    scores = score_packed(policy, packed, temperature=0.7)
    (weights[packed.rows] * scores.logprobs).sum().backward()
    via_packing = [p.grad.clone() for p in policy.trainable_parameters()]
    policy.model.zero_grad()

    direct_logprobs = []
    for _, prompt_index, tokens in rows:
        prompt = prompt_ids[prompt_index]
        # the model's own forward: its attention, masks, soft-capping and LoRA layers, and
        # for a vision model its own placing of the image features
        images = prompts.images[prompt_index] if prompts.images is not None else None
        extra = {} if images is None else {"pixel_values": images}
        logits = policy.model(input_ids=torch.tensor([prompt + tokens]), **extra).logits[0]
        logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1].float() / 0.7, -1)
        direct_logprobs.append(logprobs.gather(1, torch.tensor(tokens)[:, None])[:, 0])
    direct = torch.cat(direct_logprobs)
    total = sum(
        weight * logprobs.sum() for weight, logprobs in zip(weights, direct_logprobs, strict=True)
    )
    total.backward()

    assert torch.allclose(scores.logprobs, direct, atol=1e-4), (
        (scores.logprobs - direct).abs().max()
    )
    gradients = [p.grad for p in policy.trainable_parameters()]
    assert any(g.abs().sum() > 0 for g in via_packing)
    for a, b in zip(via_packing, gradients, strict=True):
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-7
    return packed


def inverse_cdf(generator: torch.Generator) -> Any:
    """torch.multinomial(probs, 1) as our sampler draws: the first token whose cumulative
    probability exceeds u * total, one uniform u per row from `generator`."""

    def draw(probs: torch.Tensor, num_samples: int = 1, **unused: Any) -> torch.Tensor:
        cumulative = probs.cumsum(-1)
        uniform = torch.rand((probs.shape[0], 1), generator=generator, dtype=cumulative.dtype)
        token = torch.searchsorted(cumulative, uniform * cumulative[:, -1:])
        return token.clamp(max=probs.shape[-1] - 1)

    return draw


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_sampling_with_a_seed_equals_generate(
    architecture_root: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = policy_with_adapter(architecture_root, name)
    assert_sampling_equals_generate(policy, prompt_batch(policy), monkeypatch)


@pytest.mark.parametrize("name", sorted(FUSED))
def test_sampling_one_unpadded_prompt_equals_generate(
    architecture_root: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no row is padded, so the fused decoder's masks are the sliding windows' alone
    policy = policy_with_adapter(architecture_root, name)
    assert_sampling_equals_generate(policy, prompt_batch(policy, PROMPTS[1:]), monkeypatch)


def assert_sampling_equals_generate(
    policy: Any, prompts: PromptBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import GenerationConfig

    options = {"group_size": 2, "max_tokens": 6, "temperature": 0.5, "top_p": 0.9}
    ours = sampled(policy, prompts, seed=5, **options)

    # generate with its own forward, cache and processors (temperature, then top-p); only
    # the draw from the processed distribution is swapped for ours, with the same seed
    monkeypatch.setattr(torch, "multinomial", inverse_cdf(torch.Generator().manual_seed(5)))
    config = GenerationConfig(
        do_sample=True,
        temperature=0.5,
        top_p=0.9,
        top_k=0,
        max_new_tokens=6,
        min_new_tokens=6,  # HF's way of never ending: end-of-turn is masked out
        num_return_sequences=2,
        pad_token_id=policy.pad_id,
        eos_token_id=policy.tokenizer.eos_token_id,
    )
    with torch.no_grad():
        generated = policy.model.generate(
            input_ids=prompts.input_ids,
            attention_mask=prompts.attention_mask,
            generation_config=config,
        )
    completions = generated[:, prompts.input_ids.shape[1] :]
    assert completions.tolist() == ours.completion_ids.tolist()


def spec_for(model: Path, work_dir: Path, rows: list[dict[str, Any]] | None = None) -> TrainSpec:
    """One RFT step on four rows (by default questions) graded on containing an "e"."""
    rows = rows or question_rows(4, letter="e")
    # one-token completions contain "e" about half the time: groups of 8 carry signal
    hp = {"learning_rate_multiplier": 100, "max_completion_tokens": 1, "batch_size": 4}
    hp |= {"group_size": 8, "n_epochs": 1}
    return TrainSpec(
        model=model.name,
        model_dir=model,
        train_rows=tuple(rows),
        valid_rows=tuple(rows[:2]),
        method="reinforcement",
        grader=CONTAINS_E,
        seed=0,
        work_dir=work_dir,
        grader_config=GraderConfig(),
        device="cpu",
        precision="fp32",
        hyperparameters=resolve_hyperparameters("reinforcement", hp, 4, 2),
    )


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_one_rft_step_saves_an_adapter_peft_loads(
    architecture_root: Path, name: str, tmp_path: Path
) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base_dir = model_dir(architecture_root, name)
    reporter = RecordingReporter()
    result = train(spec_for(base_dir, tmp_path), reporter, RecordingStore(tmp_path / "checkpoints"))
    assert result.status == "completed" and result.steps_done == 1
    assert reporter.steps[0]["frac_reward_zero_std"] < 1.0, "the step needs a group with signal"

    saved = load_file(result.adapter_dir / "adapter_model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    linear_layers = {
        key
        for key, module in base.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layers." in key
    }
    loaded = PeftModel.from_pretrained(base, str(result.adapter_dir))
    lora = {
        key: value
        for key, value in loaded.state_dict().items()
        if "lora_A" in key or "lora_B" in key
    }
    # every linear layer of every block is adapted (Phi-3's fused projections included)
    adapted = {key.split(".lora_")[0].removeprefix("base_model.model.") for key in lora}
    assert adapted == linear_layers
    assert len(lora) == len(saved) == 2 * len(linear_layers)
    for key, value in saved.items():
        assert torch.equal(lora[key.replace(".weight", ".default.weight")], value)
    assert any(value.abs().sum() > 0 for key, value in saved.items() if "lora_B" in key)
