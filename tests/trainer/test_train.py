"""Training through the public entry point, on the tiny model with real graders."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from app.graders import GraderConfig
from app.jobs.hyperparameters import resolve_hyperparameters
from worker.trainer.job import train
from worker.trainer.spec import TrainSpec

from .conftest import CONTAINS_E, question_rows
from .reporting import RecordingReporter, RecordingStore

# a learning rate high enough for a tiny random model to move within a few steps
FAST = {"learning_rate_multiplier": 100, "max_completion_tokens": 1, "batch_size": 4}


def spec_for(model_dir: Path, work_dir: Path, hp: dict[str, Any], **overrides: Any) -> TrainSpec:
    """A run on the tiny model; `hp` is resolved for the rows, as the job runner does."""
    rows = question_rows(8, letter="e")
    fields = {
        "model": model_dir.name,
        "model_dir": model_dir,
        "train_rows": rows,
        "valid_rows": rows[:4],
        "method": "reinforcement",
        "grader": CONTAINS_E,
        "seed": 0,
        "work_dir": work_dir,
        "grader_config": GraderConfig(),
        "device": "cpu",
        "precision": "fp32",
    } | overrides
    train_rows, valid_rows = tuple(fields.pop("train_rows")), tuple(fields.pop("valid_rows"))
    resolved = resolve_hyperparameters(fields["method"], hp, len(train_rows), len(valid_rows))
    return TrainSpec(
        train_rows=train_rows, valid_rows=valid_rows, hyperparameters=resolved, **fields
    )


def store_in(folder: Path) -> RecordingStore:
    return RecordingStore(folder / "checkpoints")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_reward_rises_on_a_learnable_grader(tiny_model_dir: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    # learns within 24 steps for every seed tried (0-3); 16 samples per prompt steady the signal
    hp = FAST | {
        "learning_rate_multiplier": 30,
        "group_size": 16,
        "n_epochs": 12,
        "eval_interval": 24,
    }
    result = train(spec_for(tiny_model_dir, tmp_path, hp), reporter, store_in(tmp_path))
    assert result.status == "completed"
    baseline = next(
        data for _, message, data in reporter.events if message.startswith("Validation before")
    )
    final = reporter.steps[-1]
    assert final["valid_reward_mean"] > baseline["valid_reward_mean"] + 0.25
    train_rewards = [data["train_reward_mean"] for data in reporter.steps]
    assert sum(train_rewards[-4:]) / 4 > sum(train_rewards[:4]) / 4 + 0.2


def test_groups_without_signal_are_reported(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = question_rows(8, answer="Paris is the capital of France")
    exact = {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    }
    reporter = RecordingReporter()
    spec = spec_for(
        tiny_model_dir,
        tmp_path,
        FAST | {"n_epochs": 1, "sampling_rounds": 4},
        train_rows=rows,
        valid_rows=rows[:2],
        grader=exact,
    )
    train(spec, reporter, store_in(tmp_path))
    assert [data["frac_reward_zero_std"] for data in reporter.steps] == [1.0, 1.0]
    # each step looked for signal in three more batches of prompts before giving up
    assert [data["sampling/rounds"] for data in reporter.steps] == [4, 4]
    warnings = [w for w in reporter.warnings() if "no learning signal" in w]
    assert len(warnings) == 2
    assert "no learning signal" in warnings[0] and "partial credit" in warnings[0]
    assert "each group of 12 more prompts" in warnings[0]
    rows_written = read_csv(tmp_path / "metrics.csv")
    assert [float(row["frac_reward_zero_std"]) for row in rows_written[1:]] == [1.0, 1.0]


def test_metrics_follow_openai_and_trl_names(tiny_model_dir: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    spec = spec_for(tiny_model_dir, tmp_path, FAST | {"n_epochs": 1, "eval_interval": 2})
    train(spec, reporter, store_in(tmp_path))
    last = reporter.steps[-1]
    for key in (
        "train_reward_mean",
        "train_mean_reward",
        "valid_reward_mean",
        "full_valid_mean_reward",
        "full_valid_mean_parse_error",
        "completion_tokens_mean",
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "entropy",
        "clip_ratio/region_mean",
        "step_time",
        "train_tokens_per_second",
    ):
        assert key in last, key
    # the spread of the step's rewards, which the dashboard draws around the mean
    for split in ("train", "valid"):
        low, mean, high = (last[f"{split}_reward_{part}"] for part in ("min", "mean", "max"))
        assert 0.0 <= low <= mean <= high <= 1.0
    assert set(last["timing"]["step"]) >= {
        "sampling",
        "grading",
        "training",
        "eval",
        "full_iteration",
    }
    assert last["scores"]["graders"][0]["name"] == "contains_e"
    assert {"train_reward_mean", "valid_reward_mean"} <= set(last["scores"]["graders"][0])
    assert reporter.messages[-1].startswith("Step 2/2, train mean reward=")
    header = read_csv(tmp_path / "metrics.csv")[0].keys()
    assert "scores/graders/string_check/contains_e/train_reward_mean" in header
    assert "timing/step/sampling" in header


def test_checkpoints_keep_the_three_best_and_the_latest(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    store = store_in(tmp_path)
    spec = spec_for(tiny_model_dir, tmp_path / "work", FAST | {"n_epochs": 3, "eval_interval": 1})
    reporter = RecordingReporter()
    result = train(spec, reporter, store)
    assert store.published == [1, 2, 3, 4, 5, 6]
    scores = {data["step"]: data["valid_reward_mean"] for data in reporter.steps}
    best = sorted(scores, key=lambda step: (scores[step], step), reverse=True)[:3]
    assert sorted(result.checkpoints) == sorted(set(best) | {6})
    assert [c.step for c in store.list()] == sorted(result.checkpoints)
    assert sorted(store.deleted) == sorted(set(scores) - set(result.checkpoints))
    assert result.best_step == best[0]
    # the run's metrics stay in its work folder; each checkpoint holds a copy up to its step
    assert result.metrics_file == tmp_path / "work" / "metrics.csv"
    latest = store.list()[-1]
    assert read_csv(latest.path / "metrics.csv") == read_csv(result.metrics_file)
    first_kept = store.list()[0]
    assert [row["step"] for row in read_csv(first_kept.path / "metrics.csv")] == [
        str(step) for step in range(first_kept.step + 1)
    ]
    # the final adapter is the latest checkpoint's, without what only a resume needs
    assert result.adapter_dir == store.final == tmp_path / "checkpoints" / "final"
    assert sorted(path.name for path in result.adapter_dir.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "trainer_state.json",
    ]
    assert not [path for path in store.root.iterdir() if path.name.startswith(".")]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, result.adapter_dir)
    final = load_file(latest.path / "adapter_model.safetensors")
    # PEFT names the loaded weights after the adapter ("default"); the file leaves that out
    loaded = {
        name.replace(".default.", "."): value
        for name, value in model.state_dict().items()
        if "lora_" in name
    }
    assert loaded.keys() == final.keys()
    assert all(torch.equal(loaded[name], final[name]) for name in final)
    assert any(value.abs().sum() > 0 for name, value in final.items() if "lora_B" in name)


def test_pause_and_resume_match_an_uninterrupted_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    hp = FAST | {"n_epochs": 2, "eval_interval": 2, "max_completion_tokens": 3}
    straight_spec = spec_for(tiny_model_dir, tmp_path / "straight", hp)
    straight = train(straight_spec, RecordingReporter(), store_in(tmp_path / "straight"))

    # each attempt has a work folder and staging names of its own; they share the store's root
    first = RecordingStore(tmp_path / "resumed", staging_prefix="attempt-1.")
    pausing = RecordingReporter(stop_at_poll=2)  # asked before step 2
    paused = train(spec_for(tiny_model_dir, tmp_path / "attempt-1", hp), pausing, first)
    assert (paused.status, paused.steps_done) == ("paused", 1)
    assert first.published == [1]
    assert paused.adapter_dir == first.step_dir(1)
    second = RecordingStore(tmp_path / "resumed", staging_prefix="attempt-2.")
    resumed_spec = spec_for(tiny_model_dir, tmp_path / "attempt-2", hp)
    resumed = train(resumed_spec, RecordingReporter(), second)
    assert resumed.status == "completed"
    assert second.published == [2, 4]

    a = load_file(straight.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    # the second attempt's metrics file starts from the checkpoint's copy of the first's
    columns = ("step", "train_reward_mean", "loss", "valid_reward_mean")
    rows_a = [[row[c] for c in columns] for row in read_csv(straight.metrics_file)]
    rows_b = [[row[c] for c in columns] for row in read_csv(resumed.metrics_file)]
    assert resumed.metrics_file == tmp_path / "attempt-2" / "metrics.csv"
    assert rows_a == rows_b
    assert straight.trained_tokens == resumed.trained_tokens


def test_a_pause_before_the_first_step_resumes_with_a_fresh_baseline(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    hp = FAST | {"n_epochs": 1, "eval_interval": 2}
    store = store_in(tmp_path)
    paused = train(
        spec_for(tiny_model_dir, tmp_path / "attempt-1", hp),
        RecordingReporter(stop_at_poll=1),
        store,
    )
    assert (paused.status, paused.steps_done, store.published) == ("paused", 0, [0])
    reporter = RecordingReporter()
    resumed = train(spec_for(tiny_model_dir, tmp_path / "attempt-2", hp), reporter, store)
    assert resumed.status == "completed"
    assert any(message.startswith("Validation before") for _, message, _ in reporter.events)
    assert [row["step"] for row in read_csv(resumed.metrics_file)] == ["0", "1", "2"]


def test_cancel_stops_at_a_step_boundary(tiny_model_dir: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter(stop_at_poll=2, stop="cancel")
    store = store_in(tmp_path)
    result = train(
        spec_for(tiny_model_dir, tmp_path, FAST | {"n_epochs": 2, "eval_interval": 4}),
        reporter,
        store,
    )
    assert (result.status, result.steps_done) == ("cancelled", 1)
    assert len(reporter.steps) == 1
    assert store.published == [] and store.list() == []


@pytest.mark.parametrize(
    "knobs",
    [
        {"loss_type": "grpo", "num_iterations": 2, "beta": 0.05, "sampling_rounds": 3},
        {"loss_type": "dr_grpo", "scale_rewards": "batch", "top_p": 0.9},
    ],
)
def test_loss_variants_train(tiny_model_dir: Path, tmp_path: Path, knobs: dict[str, Any]) -> None:
    reporter = RecordingReporter()
    hp = FAST | {"n_epochs": 1, "max_completion_tokens": 3} | knobs
    spec = spec_for(tiny_model_dir, tmp_path, hp)
    result = train(spec, reporter, store_in(tmp_path))
    assert result.status == "completed"
    assert spec.hyperparameters.loss_type == knobs["loss_type"]
    for data in reporter.steps:
        assert math.isfinite(data["loss"]) and math.isfinite(data["grad_norm"])
        assert (data["kl"] is not None) is ("beta" in knobs)
        # with dynamic sampling the groups with signal are trained (the step's own four if none
        # has any); with a KL term every completion of them, without only those with an advantage
        groups = data["sampling/signal_groups"] if "sampling_rounds" in knobs else 4
        groups = groups or 4
        if "beta" in knobs:
            assert data["trained_completions"] == 8 * groups
        else:
            assert data["trained_completions"] <= 8 * data["sampling/signal_groups"]


def test_supervised_lowers_validation_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Say yes {i}"},
                {"role": "assistant", "content": "yes"},
            ],
            "answer": "yes",
        }
        for i in range(8)
    ]
    grader = {
        "type": "string_check",
        "name": "yes",
        "input": "{{sample.output_text}}",
        "reference": "{{item.answer}}",
        "operation": "eq",
    }
    reporter = RecordingReporter()
    hp = {
        "n_epochs": 3,
        "batch_size": 4,
        "learning_rate_multiplier": 50,
        "eval_interval": 3,
    }
    spec = spec_for(
        tiny_model_dir,
        tmp_path,
        hp,
        method="supervised",
        train_rows=rows,
        valid_rows=rows[:4],
        grader=grader,
    )
    result = train(spec, reporter, store_in(tmp_path))
    assert result.status == "completed"
    baseline = next(
        data for _, message, data in reporter.events if message.startswith("Validation before")
    )
    final = reporter.steps[-1]
    assert set(final) >= {
        "train_loss",
        "train_mean_token_accuracy",
        "valid_loss",
        "valid_mean_token_accuracy",
        "full_valid_loss",
        "full_valid_mean_token_accuracy",
        "valid_reward_mean",
    }
    assert final["full_valid_loss"] < baseline["full_valid_loss"] - 1.0
    assert reporter.steps[-1]["train_loss"] < reporter.steps[0]["train_loss"]


def test_command_line_prints_steps_and_writes_files(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.trainer.__main__ import main

    rows = question_rows(4, letter="e")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "valid.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:2]))
    (tmp_path / "grader.json").write_text(json.dumps(CONTAINS_E))
    out = tmp_path / "out"
    code = main(
        [
            "--model",
            str(tiny_model_dir),
            "--train",
            str(tmp_path / "train.jsonl"),
            "--valid",
            str(tmp_path / "valid.jsonl"),
            "--method",
            "reinforcement",
            "--grader",
            str(tmp_path / "grader.json"),
            "--out",
            str(out),
            "--precision",
            "fp32",
            "--hyperparameters",
            json.dumps({"batch_size": 2, "n_epochs": 1, "max_completion_tokens": 2}),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert sum(line.startswith("Step ") for line in printed.splitlines()) == 2
    assert json.loads(printed.strip().splitlines()[-1])["status"] == "completed"
    assert "checkpoint step 2: " in printed
    assert (out / "metrics.csv").is_file()
    assert (out / "checkpoints" / "final" / "adapter_model.safetensors").is_file()
