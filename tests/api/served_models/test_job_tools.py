"""Jobs whose data has tools: refused at creation for a model whose chat template renders no
tools, naming the model and the line; accepted for one that does."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from app.base_models import GEMMA3_NAME, SMOLLM2_NAME, packaged_models
from tests.api.jobfiles import rft_method, rft_rows, upload_rows
from tests.inference.models import ServedModels

TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def with_tools(rows: list[dict], *line_numbers: int) -> list[dict]:
    return [
        {**row, "tools": [TOOL]} if number in line_numbers else row
        for number, row in enumerate(rows, start=1)
    ]


def test_tools_need_a_model_whose_template_renders_them(
    client: openai.OpenAI, served: ServedModels, tmp_path: Path
) -> None:
    plain = upload_rows(client, tmp_path, "plain.jsonl", rft_rows(10))
    tools = upload_rows(client, tmp_path, "tools.jsonl", with_tools(rft_rows(10), 3))
    history = rft_rows(2)
    history[1]["messages"] = [
        {"role": "user", "content": "Add 1 and 2."},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "add", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "3"},
        {"role": "user", "content": "And the answer?"},
    ]
    tool_turns = upload_rows(client, tmp_path, "history.jsonl", history)
    cases = [
        (served.base_dir.name, tools, plain, "training_file", "line 3"),
        (SMOLLM2_NAME, tools, plain, "training_file", "line 3"),  # its template is in a GGUF
        (served.base_dir.name, plain, tool_turns, "validation_file", "line 2"),
    ]
    if any(model.name == GEMMA3_NAME for model in packaged_models()):
        # its GGUF, split across four packages, has no template: read through all the parts
        cases.append((GEMMA3_NAME, tools, plain, "training_file", "line 3"))
    for model, training, validation, param, line in cases:
        with pytest.raises(openai.BadRequestError) as raised:
            client.fine_tuning.jobs.create(
                model=model,
                training_file=training,
                validation_file=validation,
                method=rft_method(),
            )
        assert raised.value.param == param
        assert f"Model '{model}'" in raised.value.message and line in raised.value.message
        assert raised.value.code == "model_without_tool_support"

    job = client.fine_tuning.jobs.create(
        model=served.tool_model_dir.name,
        training_file=tools,
        validation_file=tool_turns,
        method=rft_method(),
    )
    try:
        assert job.status == "validating_files"
    finally:
        client.fine_tuning.jobs.cancel(job.id)
