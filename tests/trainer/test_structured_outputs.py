"""RFT with a response_format: every sampled completion matches the schema, and graders read
it parsed as `sample.output_json`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from worker.constrained import ConstraintError
from worker.trainer.data import encode_prompt
from worker.trainer.job import train
from worker.trainer.tiny import load_smollm2_tokenizer

from .conftest import question_rows
from .reporting import RecordingReporter
from .test_train import FAST, spec_for, store_in

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no", "maybe"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "verdict", "schema": ANSWER_SCHEMA, "strict": True},
}
ANSWER_IS_YES = {
    "type": "string_check",
    "name": "yes",
    "input": "{{ sample.output_json.answer }}",
    "reference": "{{ item.answer }}",
    "operation": "eq",
}
# '{"answer": "maybe"}' is 19 characters: a token is at least one, plus the end-of-turn token
ROOM = 20


def test_every_sample_of_every_step_matches_the_schema_and_is_graded_parsed(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    reporter = RecordingReporter()
    hp = FAST | {"n_epochs": 1, "group_size": 4, "max_completion_tokens": ROOM,
                 "eval_interval": 1, "eval_samples": 2}  # fmt: skip
    spec = spec_for(
        tiny_model_dir, tmp_path, hp, grader=ANSWER_IS_YES, response_format=RESPONSE_FORMAT,
        train_rows=question_rows(8, answer="yes"), valid_rows=question_rows(2, answer="yes"),
        samples_per_step=64,
    )  # fmt: skip
    result = train(spec, reporter, store_in(tmp_path))
    assert result.status == "completed"
    stored = [(step, split, sample) for step, split, kept in reporter.samples for sample in kept]
    # all 16 completions of each of the 2 steps, and 4 per validation run (before, 1, 2)
    assert sorted({(step, split) for step, split, _ in stored}) == [
        (0, "validation"), (1, "train"), (1, "validation"), (2, "train"), (2, "validation"),
    ]  # fmt: skip
    assert len(stored) == 2 * 16 + 3 * 4
    answers = []
    for _, _, sample in stored:
        parsed = json.loads(sample["completion"])
        jsonschema.validate(parsed, ANSWER_SCHEMA)
        # the grader compared the parsed field: a "yes" earns 1, anything else 0
        assert sample["reward"] == (1.0 if parsed["answer"] == "yes" else 0.0)
        answers.append(parsed["answer"])
    assert len(set(answers)) > 1  # a random model's choice, not a forced one
    assert all(data["completions/clipped_ratio"] == 0.0 for data in reporter.steps)
    assert result.trained_tokens > 0


def test_trained_tokens_count_every_sampled_token_even_without_signal(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # one fixed answer for every completion: no group has signal, nothing is trained on,
    # but each step still processed its prompts and completions
    hp = FAST | {"n_epochs": 1, "group_size": 2, "max_completion_tokens": ROOM}
    constant = {
        "type": "string_check", "name": "parsed", "input": "{{ sample.output_json.answer }}",
        "reference": "{{ sample.output_json.answer }}", "operation": "eq",
    }  # fmt: skip
    spec = spec_for(tiny_model_dir, tmp_path, hp, grader=constant, response_format=RESPONSE_FORMAT)
    reporter = RecordingReporter()
    result = train(spec, reporter, store_in(tmp_path))
    assert [data["frac_reward_zero_std"] for data in reporter.steps] == [1.0, 1.0]
    assert [data["trained_completions"] for data in reporter.steps] == [0, 0]
    # 8 prompts over 2 steps of 4, each prompt once per completion of its group of 2
    tokenizer = load_smollm2_tokenizer()
    prompt_tokens = sum(len(encode_prompt(tokenizer, row)) for row in spec.train_rows)
    completion_tokens = sum(data["completions/mean_length"] * 8 for data in reporter.steps)
    assert result.trained_tokens == 2 * prompt_tokens + round(completion_tokens)


def test_a_schema_that_cannot_be_enforced_stops_the_run_naming_the_reason(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    unenforceable = {"type": "json_schema", "json_schema": {"name": "zip", "strict": True,
                     "schema": {"type": "string", "format": "postcode"}}}  # fmt: skip
    spec = spec_for(tiny_model_dir, tmp_path, FAST, response_format=unenforceable)
    with pytest.raises(ConstraintError, match="Unknown format: postcode"):
        train(spec, RecordingReporter(), store_in(tmp_path))
