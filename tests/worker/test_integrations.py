"""The W&B reporter wrapper: steps go to an offline run and on to the job's reporter; a W&B
that fails leaves one warning and training going on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.trainer.reporting import RecordingReporter
from tests.worker.wandb_files import history, offline_run_files, run_info
from worker.integrations import TrackedReporter, numeric_leaves

STEP = {
    "step": 1,
    "total_steps": 2,
    "train_reward_mean": 0.25,
    "valid_reward_mean": None,
    "timing": {"step": {"sampling": 0.5, "train": 0.25}},
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_numbers_are_flattened_and_the_rest_left_out() -> None:
    assert dict(numeric_leaves(STEP | {"ok": True, "note": "x"})) == {
        "step": 1,
        "total_steps": 2,
        "train_reward_mean": 0.25,
        "timing/step/sampling": 0.5,
        "timing/step/train": 0.25,
        "ok": 1.0,
    }


def test_steps_go_to_an_offline_run_and_to_the_job(tmp_path: Path) -> None:
    inner = RecordingReporter()
    tracked = TrackedReporter(
        inner,
        {"project": "adder", "entity": None, "name": "first try", "tags": ["math"]},
        tmp_path,
        "ftjob-abc",
        "tiny-chat",
        {"batch_size": 4, "learning_rate": 1e-4},
    )
    tracked.on_event("info", "hello")
    tracked.on_step(1, 2, "Step 1/2", STEP)
    tracked.on_step(2, 2, "Step 2/2", STEP | {"step": 2, "train_reward_mean": 0.75})
    tracked.close(succeeded=True)

    assert inner.events == [("info", "hello", None)]
    assert inner.messages == ["Step 1/2", "Step 2/2"]
    [run_file] = offline_run_files(tmp_path)
    info = run_info(run_file)
    assert (info["id"], info["project"], info["name"]) == ("ftjob-abc", "adder", "first try")
    assert info["tags"] == ["math", "openrft/finetune", "openrft/tiny-chat", "openrft/ftjob-abc"]
    assert {k: v for k, v in info["config"].items() if not k.startswith("_")} == {
        "batch_size": 4,
        "learning_rate": 1e-4,
    }
    steps = history(run_file)
    assert [(row["_step"], row["train_reward_mean"]) for row in steps] == [(1, 0.25), (2, 0.75)]
    assert steps[0]["timing/step/sampling"] == 0.5


def test_a_failing_wandb_warns_once_and_training_goes_on(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the run folder should be")
    inner = RecordingReporter()
    tracked = TrackedReporter(inner, {"project": "adder"}, blocked, "ftjob-abc", "tiny-chat", {})
    tracked.on_step(1, 2, "Step 1/2", STEP)
    tracked.close(succeeded=True)
    assert len(inner.warnings()) == 1
    assert inner.warnings()[0].startswith("Weights & Biases integration could not start a run")
    assert inner.messages == ["Step 1/2"]
