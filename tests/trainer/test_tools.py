"""Tools in reinforcement fine-tuning: the dataset's tools rendered by the model's own chat
template, the model's calls parsed and handed to graders as `sample.output_tools`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from app.graders import BatchGrader, GraderConfig
from tests.tool_models import build_tiny_tool_model
from worker.trainer.data import encode_prompt, model_tool_format
from worker.trainer.grpo import grade
from worker.trainer.job import train
from worker.trainer.sampling import Rollout
from worker.trainer.spec import WarmStart

from .reporting import RecordingReporter
from .test_train import spec_for, store_in

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TOOL_NAME_GRADER = {
    "type": "string_check",
    "name": "called",
    "input": "{{ sample.output_tools[0].function.name }}",
    "reference": "{{ item.tool }}",
    "operation": "eq",
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def tool_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [{"role": "user", "content": f"Weather in city number {n}?"}],
            "tools": [WEATHER],
            "tool": "get_weather",
        }
        for n in range(count)
    ]


@pytest.fixture(scope="module")
def tool_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_tool_model(tmp_path_factory.mktemp("tool-models"))


@pytest.fixture
def tool_policy(tool_model_dir: Path) -> Any:
    from worker.trainer.models import load_policy

    torch.manual_seed(0)
    return load_policy(tool_model_dir, lora_rank=4, lora_alpha=8, device="cpu", precision="fp32")


def test_prompts_carry_the_tools_as_the_template_renders_them(tool_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tool_model_dir)
    row = tool_rows(1)[0]
    prompt = tokenizer.decode(encode_prompt(tokenizer, row))
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": row["messages"][0]["content"]}],
        tools=[WEATHER],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert prompt == rendered
    assert f"<tools>\n{json.dumps(WEATHER)}\n</tools>" in prompt


def test_history_calls_and_tool_results_are_rendered(tool_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tool_model_dir)
    call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    row = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "type": "function", "function": call}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
            {"role": "user", "content": "Thanks. And tomorrow?"},
        ],
        "tools": [WEATHER],
    }
    prompt = tokenizer.decode(encode_prompt(tokenizer, row))
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert f"<|im_start|>assistant\n{CALL}<|im_end|>" in prompt
    assert "<|im_start|>user\n<tool_response>\nSunny\n</tool_response><|im_end|>" in prompt


def test_a_template_without_tool_support_is_refused(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model_tool_format(tokenizer) is None
    with pytest.raises(ValueError, match="renders no tools"):
        encode_prompt(tokenizer, tool_rows(1)[0])


def rollout_of(tokenizer: Any, texts: list[str]) -> Rollout:
    rows = [
        tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for text in texts
    ]
    width = max(len(row) for row in rows)
    ids = torch.tensor([row + [tokenizer.eos_token_id] * (width - len(row)) for row in rows])
    mask = torch.tensor([[1.0] * len(row) + [0.0] * (width - len(row)) for row in rows])
    zeros = torch.zeros(ids.shape)
    return Rollout(ids, mask, zeros, zeros, torch.ones(len(rows), dtype=torch.bool))


def test_parsed_calls_reach_the_grader(tool_policy: Any) -> None:
    """Two prompts with tools, two completions each: calls are parsed into output_tools; a
    completion without a call has none (and the grader cannot read a name from it)."""
    texts = [
        CALL,
        "It is sunny.",
        "Let me check.\n" + CALL.replace("get_weather", "get_time"),
        CALL,
    ]
    rollout = rollout_of(tool_policy.tokenizer, texts)
    items = [{"tool": "get_weather"}, {"tool": "get_weather"}]
    with BatchGrader(TOOL_NAME_GRADER, GraderConfig()) as grader:
        graded = grade(tool_policy, grader, rollout, items, 2, ["hermes", "hermes"])
        assert graded.rewards.tolist() == [1.0, 0.0, 0.0, 1.0]
        # without tools in the prompt nothing is parsed: the same text is plain text
        plain = grade(tool_policy, grader, rollout_of(tool_policy.tokenizer, [CALL]), items[:1], 1)
    assert plain.rewards.tolist() == [0.0]
    errors = [result.errors for result in graded.grades.results]
    assert not any(errors[0].values()) and errors[1]["invalid_variable_error"]


def test_a_tools_dataset_trains_end_to_end(tool_model_dir: Path, tmp_path: Path) -> None:
    reporter = RecordingReporter()
    rows = tool_rows(8)
    grader = {
        "type": "string_check",
        "name": "contains_e",
        "input": "{{ sample.output_text }}",
        "reference": "e",
        "operation": "like",
    }
    hp = {"max_completion_tokens": 4, "batch_size": 4, "group_size": 2, "n_epochs": 1}
    spec = spec_for(
        tool_model_dir, tmp_path, hp, train_rows=rows, valid_rows=rows[:2], grader=grader
    )
    result = train(spec, reporter, store_in(tmp_path))
    assert result.status == "completed"
    assert reporter.steps


def test_a_model_that_learned_to_call_is_graded_on_its_own_calls(
    tool_model_dir: Path, tmp_path: Path
) -> None:
    """The whole run: a short supervised warm start teaches the tiny model to answer with a
    call (the rows' `call` field), then RL samples it. The calls the model itself writes are
    parsed and graded on `sample.output_tools[0].function.name`."""
    reporter = RecordingReporter()
    rows = [{**row, "call": CALL} for row in tool_rows(8)]
    hp = {"max_completion_tokens": 32, "batch_size": 4, "group_size": 2, "n_epochs": 1}
    hp |= {"eval_interval": 100, "learning_rate_multiplier": 20}
    spec = spec_for(
        tool_model_dir, tmp_path, hp, train_rows=rows, valid_rows=rows[:2], grader=TOOL_NAME_GRADER
    )
    warm = {"field": "call", "n_epochs": 20, "batch_size": 4, "learning_rate_multiplier": 30}
    warm_start = WarmStart.resolve(warm, spec.hyperparameters, len(rows))
    spec = type(spec)(**{**spec.__dict__, "warm_start": warm_start})
    result = train(spec, reporter, store_in(tmp_path))
    assert result.status == "completed"
    baseline = next(d for _, m, d in reporter.events if m.startswith("Validation before"))
    assert baseline["valid_reward_mean"] == 0.0  # the random model writes no call
    rl_steps = [n for n, data in enumerate(reporter.steps, 1) if data["phase"] == "reinforcement"]
    rl_samples = [
        sample
        for step, split, samples in reporter.samples
        if split == "train" and step in rl_steps
        for sample in samples
    ]
    # a reward of 1 is the grader reading get_weather from a call the model wrote
    called = [sample for sample in rl_samples if sample["reward"] == 1.0]
    assert called, [sample["completion"] for sample in rl_samples][:2]
    assert all("<tool_call>" in sample["completion"] for sample in called)
    assert max(reporter.steps[n - 1]["train_reward_mean"] for n in rl_steps) > 0
