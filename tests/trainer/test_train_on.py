"""Training on from a saved adapter (`TrainSpec.init_adapter_dir`): the run starts from its
weights exactly, and refuses an adapter of another shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from worker.trainer.job import train

from .reporting import RecordingReporter
from .test_train import FAST, spec_for, store_in

ADAPTER = "adapter_model.safetensors"


def _parent(tiny_model_dir: Path, tmp_path: Path) -> tuple[Path, RecordingReporter]:
    reporter = RecordingReporter()
    spec = spec_for(tiny_model_dir, tmp_path / "parent", FAST | {"n_epochs": 1})
    result = train(spec, reporter, store_in(tmp_path / "parent"))
    assert result.status == "completed" and result.adapter_dir is not None
    return result.adapter_dir, reporter


def test_a_run_starts_from_the_given_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    parent_dir, parent = _parent(tiny_model_dir, tmp_path)
    # another seed: a fresh adapter would be initialised differently
    spec = spec_for(
        tiny_model_dir, tmp_path / "child", FAST | {"n_epochs": 1}, seed=5,
        init_adapter_dir=parent_dir,
    )  # fmt: skip
    store = store_in(tmp_path / "child")
    paused = train(spec, RecordingReporter(stop_at_poll=1), store)  # paused before step 1
    assert (paused.status, store.published) == ("paused", [0])
    parent_weights = load_file(parent_dir / ADAPTER)
    start_weights = load_file(store.step_dir(0) / ADAPTER)
    assert start_weights.keys() == parent_weights.keys()
    assert all(torch.equal(start_weights[key], parent_weights[key]) for key in parent_weights)
    assert any(value.abs().sum() > 0 for key, value in start_weights.items() if "lora_B" in key)


def test_the_first_validation_is_the_parents_last(tiny_model_dir: Path, tmp_path: Path) -> None:
    parent_dir, parent = _parent(tiny_model_dir, tmp_path)
    child = RecordingReporter()
    spec = spec_for(
        tiny_model_dir, tmp_path / "child", FAST | {"n_epochs": 1}, init_adapter_dir=parent_dir
    )
    assert train(spec, child, store_in(tmp_path / "child")).status == "completed"

    def baseline(reporter: RecordingReporter) -> dict:
        return next(d for _, m, d in reporter.events if m.startswith("Validation before"))

    # evaluations draw from a generator seeded by the run's seed: the same weights on the same
    # validation rows give the same figures
    parent_last = parent.steps[-1]
    assert baseline(child)["valid_reward_mean"] == pytest.approx(
        parent_last["valid_reward_mean"], abs=1e-9
    )
    assert baseline(child)["valid_reward_mean"] != baseline(parent)["valid_reward_mean"]


def test_an_adapter_of_another_rank_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    parent_dir, _ = _parent(tiny_model_dir, tmp_path)  # rank 16
    spec = spec_for(
        tiny_model_dir, tmp_path / "child", FAST | {"n_epochs": 1, "lora_rank": 4},
        init_adapter_dir=parent_dir,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="size mismatch"):
        train(spec, RecordingReporter(), store_in(tmp_path / "child"))
