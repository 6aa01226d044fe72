"""DPO: the loss against hand-computed values and against TRL's DPOTrainer on the same batch and
weights, and a run through the trainer's entry point."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from app.graders import GraderConfig
from app.jobs.hyperparameters import resolve_hyperparameters
from worker.trainer.data import encode_preference
from worker.trainer.dpo import PreferenceBatch, batch_stats, dpo_loss
from worker.trainer.job import train
from worker.trainer.models import LORA_TARGET_MODULES
from worker.trainer.spec import TrainSpec

from .reporting import RecordingReporter, RecordingStore

BETA = 0.5


def preference_rows(count: int) -> list[dict[str, Any]]:
    """Pairs whose preferred answer says "yes" and whose other answer rambles."""
    return [
        {
            "input": {"messages": [{"role": "user", "content": f"Is {i} a number?"}]},
            "preferred_output": [{"role": "assistant", "content": "yes"}],
            "non_preferred_output": [
                {"role": "assistant", "content": f"well, {i} might be, who knows"}
            ],
        }
        for i in range(count)
    ]


def test_dpo_loss_matches_hand_computed_values() -> None:
    chosen, rejected = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-3.5, -4.0]), torch.tensor([-3.0, -2.5])
    stats = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.1)
    # pair 0: log-ratios 0.5 and -1.0, margin 0.15; pair 1: -1.0 and 0.5, margin -0.15
    expected = [math.log1p(math.exp(-0.15)), math.log1p(math.exp(0.15))]
    assert stats.losses.tolist() == pytest.approx(expected, rel=1e-6)
    metrics = stats.metrics()
    assert metrics["rewards/chosen"] == pytest.approx((0.05 - 0.1) / 2)
    assert metrics["rewards/rejected"] == pytest.approx((-0.1 + 0.05) / 2)
    assert metrics["rewards/margins"] == pytest.approx(0.0, abs=1e-7)
    assert metrics["rewards/accuracies"] == 0.5
    assert metrics["logps/chosen"] == -4.0
    assert metrics["logps/rejected"] == -3.0


def perturb_adapter(model: Any, seed: int) -> None:
    """PEFT starts B at zero (policy = reference, every loss log 2); random B makes the two
    differ, so the comparison can fail."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)


def trl_trainer(model_dir: Path, out_dir: Path, tokenizer: Any) -> Any:
    """TRL's DPOTrainer on a fresh copy of the base model with the same LoRA configuration:
    its reference is then, like ours, the base model with the adapter disabled."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    rows = preference_rows(2)
    dataset = Dataset.from_list(
        [
            {
                "prompt": row["input"]["messages"],
                "chosen": row["preferred_output"],
                "rejected": row["non_preferred_output"],
            }
            for row in rows
        ]
    )
    config = DPOConfig(
        output_dir=str(out_dir),
        beta=BETA,
        loss_type=["sigmoid"],
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        report_to="none",
        max_length=None,
    )
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=LORA_TARGET_MODULES,
        task_type="CAUSAL_LM",
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora,
    )


def test_loss_and_gradients_match_trl(
    tiny_model_dir: Path, tiny_policy: Any, tmp_path: Path
) -> None:
    perturb_adapter(tiny_policy.model, seed=1)
    trainer = trl_trainer(tiny_model_dir, tmp_path, tiny_policy.tokenizer)
    ours = dict(tiny_policy.model.named_parameters())
    with torch.no_grad():
        for name, parameter in trainer.model.named_parameters():
            if "lora_" in name:
                parameter.copy_(ours[name])

    triples = [encode_preference(tiny_policy.tokenizer, row) for row in preference_rows(3)]
    tiny_policy.model.train()
    stats, _ = batch_stats(tiny_policy, PreferenceBatch.build(triples, tiny_policy), BETA)
    loss = stats.losses.mean()
    loss.backward()
    loss = loss.detach()

    inputs = trainer.data_collator(
        [{"prompt_ids": p, "chosen_ids": c, "rejected_ids": r} for p, c, r in triples]
    )
    trainer.model.train()
    trl_loss = trainer.compute_loss(trainer.model, inputs)
    trl_loss.backward()
    trl_loss = trl_loss.detach()

    assert abs(float(loss) - math.log(2)) > 1e-3  # the perturbed adapter moved the policy
    assert float(loss) == pytest.approx(float(trl_loss), abs=1e-5)
    logged = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    for name, value in stats.metrics().items():
        assert value == pytest.approx(logged[name], abs=1e-4), name
    theirs = dict(trainer.model.named_parameters())
    compared = 0
    for name, parameter in ours.items():
        if "lora_" in name:
            torch.testing.assert_close(parameter.grad, theirs[name].grad, atol=1e-5, rtol=1e-4)
            compared += 1
    assert compared > 0


def dpo_spec(model_dir: Path, work_dir: Path, hp: dict[str, Any], n_valid: int = 4) -> TrainSpec:
    rows, valid = preference_rows(8), preference_rows(8 + n_valid)[8:]
    return TrainSpec(
        model=model_dir.name,
        model_dir=model_dir,
        train_rows=rows,
        valid_rows=valid,
        method="dpo",
        grader=None,
        hyperparameters=resolve_hyperparameters("dpo", hp, len(rows), len(valid)),
        seed=0,
        work_dir=work_dir,
        grader_config=GraderConfig(),
        device="cpu",
        precision="fp32",
    )


def test_dpo_run_learns_the_preference(tiny_model_dir: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    store = RecordingStore(tmp_path / "checkpoints")
    hp = {"learning_rate_multiplier": 20, "batch_size": 4, "n_epochs": 4, "eval_interval": 4}
    result = train(dpo_spec(tiny_model_dir, tmp_path / "work", hp), reporter, store)

    assert result.status == "completed"
    assert result.total_steps == 8 and store.published == [4, 8]
    first, last = reporter.steps[0], reporter.steps[-1]
    # the first step is taken with the adapter at zero: policy = reference
    assert first["train_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "logps/chosen",
                 "logps/rejected", "valid_loss", "grad_norm", "learning_rate"):  # fmt: skip
        assert name in first, name
    assert last["train_loss"] < 0.5 and last["rewards/accuracies"] == 1.0
    assert last["full_valid_loss"] < math.log(2) - 0.1
    assert last["eval_rewards/margins"] > 0
    assert "reward accuracy=" in reporter.messages[-1]
    hyperparameters = reporter.events[0][2]["hyperparameters"]
    assert hyperparameters["beta"] == 0.1
    assert result.metrics_file is not None
    header = result.metrics_file.read_text().splitlines()[0].split(",")
    assert {"train_loss", "rewards/margins", "full_valid_loss"} <= set(header)


def test_dpo_run_without_validation_file(tiny_model_dir: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    store = RecordingStore(tmp_path / "checkpoints")
    hp = {"batch_size": 4, "n_epochs": 1}
    result = train(dpo_spec(tiny_model_dir, tmp_path / "work", hp, n_valid=0), reporter, store)
    assert result.status == "completed" and store.published == [1, 2]
    assert result.best_step is None  # no validation loss to rank checkpoints by
    assert all("valid_loss" not in data for data in reporter.steps)
