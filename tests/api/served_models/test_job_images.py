"""Images in training data, through the official SDK: an RFT job on a vision model (the tiny
LLaVA) trains on them and succeeds; a text model, a method other than reinforcement, a warm
start, a URL to fetch and bytes that are not the image they claim are each refused, naming
the line, the part and the reason. Chat takes images on a vision model, streamed or not."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.api.jobfiles import cancel_unfinished, rft_method, sft_rows, upload_rows
from tests.conftest import wait_for_job
from tests.inference.models import ServedModels
from tests.vision_models import image_part, image_row, png

RED, BLUE = (220, 30, 30), (30, 30, 220)


def image_rows(count: int) -> list[dict[str, Any]]:
    return [
        image_row(
            "Which colour is this?", RED if n % 2 else BLUE, answer="red" if n % 2 else "blue"
        )
        for n in range(count)
    ]


def with_part(rows: list[dict[str, Any]], line: int, part: dict[str, Any]) -> list[dict[str, Any]]:
    """`rows` with line `line`'s image part replaced by `part`."""
    changed = [dict(row) for row in rows]
    question = changed[line - 1]["messages"][0]["content"][0]
    changed[line - 1] = {**changed[line - 1], "messages": [
        {"role": "user", "content": [question, part]}
    ]}  # fmt: skip
    return changed


def failed_job(client: openai.OpenAI, model: str, training: str, validation: str) -> Any:
    job = client.fine_tuning.jobs.create(
        model=model, training_file=training, validation_file=validation, method=rft_method()
    )
    return wait_for_job(client, job.id, {"failed", "succeeded", "cancelled"}, timeout=120)


def test_an_rft_job_on_a_vision_model_trains_on_its_images(
    client: openai.OpenAI, served: ServedModels, tmp_path: Path
) -> None:
    cancel_unfinished(client)
    training = upload_rows(client, tmp_path, "train.jsonl", image_rows(10))
    validation = upload_rows(client, tmp_path, "valid.jsonl", image_rows(2))
    job = client.fine_tuning.jobs.create(
        model=served.vision_model_dir.name,
        training_file=training,
        validation_file=validation,
        method=rft_method(),
        suffix="colours",
    )
    job = wait_for_job(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=240)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model and job.trained_tokens and job.trained_tokens > 0

    # the fine-tuned vision model answers chat, with text or with images
    completion = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[{"role": "user", "content": "Which colour?"}],
        max_tokens=4,
    )
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def ask_about(
    client: openai.OpenAI, model: str, colour: tuple[int, int, int], **options: Any
) -> Any:
    content = [{"type": "text", "text": "Which colour is this?"}, image_part(colour)]
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item, misc]
        max_tokens=6,
        seed=11,
        logprobs=True,
        **options,
    )


def test_chat_with_an_image_reads_the_image(client: openai.OpenAI, served: ServedModels) -> None:
    vision = served.vision_model_dir.name
    red, blue = ask_about(client, vision, RED), ask_about(client, vision, BLUE)
    assert red.usage.prompt_tokens == blue.usage.prompt_tokens
    # the image is the only difference, and the model's distribution moves with it
    red_logprobs = [token.logprob for token in red.choices[0].logprobs.content]
    blue_logprobs = [token.logprob for token in blue.choices[0].logprobs.content]
    assert red_logprobs != blue_logprobs
    assert (
        ask_about(client, vision, RED).choices[0].message.content == red.choices[0].message.content
    )

    streamed = ask_about(client, vision, RED, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert text == red.choices[0].message.content

    with pytest.raises(openai.BadRequestError) as raised:
        ask_about(client, served.base_dir.name, RED)
    assert raised.value.code == "model_without_image_support"
    assert "Model 'tiny-chat' cannot be given images: it reads text only" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=vision,
            messages=[
                {
                    "role": "user",
                    "content": [  # type: ignore[list-item, misc]
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
                    ],
                }
            ],  # fmt: skip
        )
    assert raised.value.param == "messages[0].content[0]"
    assert "image URLs are not fetched" in raised.value.message
    detailed = image_part(RED)
    detailed["image_url"]["detail"] = "high"
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=vision,
            messages=[{"role": "user", "content": [detailed]}],  # type: ignore[list-item, misc]
        )
    assert raised.value.param == "messages[0].content[0]"
    assert "\"detail\": 'high' is not supported" in raised.value.message


def test_images_a_job_cannot_train_on_are_refused_by_line_and_part(
    client: openai.OpenAI, served: ServedModels, tmp_path: Path
) -> None:
    cancel_unfinished(client)
    vision = served.vision_model_dir.name
    good = image_rows(10)
    validation = upload_rows(client, tmp_path, "valid.jsonl", image_rows(2))
    jpeg_claim = "data:image/jpeg;base64," + base64.b64encode(png(RED)).decode()
    cases = [
        (served.base_dir.name, good, "images are not supported: tiny-chat reads text only"),
        (
            vision,
            with_part(good, 4, {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}),
            "Line 4: messages[0].content[1]: image URLs are not fetched",
        ),
        (
            vision,
            with_part(
                good, 5, {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}
            ),
            "Line 5: messages[0].content[1]: the image's data URL is not valid base64",
        ),
        (
            vision,
            with_part(good, 6, {"type": "image_url", "image_url": {"url": jpeg_claim}}),
            "Line 6: messages[0].content[1]: the data URL says image/jpeg, but the data is PNG",
        ),
    ]
    for number, (model, rows, message) in enumerate(cases):
        training = upload_rows(client, tmp_path, f"train-{number}.jsonl", rows)
        job = failed_job(client, model, training, validation)
        assert job.status == "failed"
        assert job.error is not None and job.error.param == "training_file"
        assert message in job.error.message, job.error.message


def test_images_are_for_reinforcement_alone(
    client: openai.OpenAI, served: ServedModels, tmp_path: Path
) -> None:
    cancel_unfinished(client)
    vision = served.vision_model_dir.name
    rows = sft_rows(10)
    rows[2]["messages"][0]["content"] = [{"type": "text", "text": "Colour?"}, image_part(RED)]
    training = upload_rows(client, tmp_path, "sft.jsonl", rows)
    job = client.fine_tuning.jobs.create(
        model=vision, training_file=training, method={"type": "supervised"}
    )
    job = wait_for_job(client, job.id, {"failed", "succeeded"}, timeout=120)
    assert job.status == "failed" and job.error is not None
    assert (
        "Line 3: messages[0].content[1]: images are not supported: they are trained on by "
        "reinforcement fine-tuning only, not supervised" in job.error.message
    )

    training = upload_rows(client, tmp_path, "train.jsonl", image_rows(10))
    method = rft_method()
    method["reinforcement"]["warm_start"] = {"field": "answer"}
    with pytest.raises(openai.BadRequestError) as raised:
        client.fine_tuning.jobs.create(
            model=vision, training_file=training, validation_file=training, method=method
        )
    assert raised.value.param == "method.reinforcement.warm_start"
    assert "Line 1 of the training file has an image" in raised.value.message
