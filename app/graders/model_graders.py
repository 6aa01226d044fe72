"""score_model and label_model: a chat model judges the sample.

The rendered `input` messages are sent to an OpenAI-compatible chat completions endpoint,
followed by one system message stating the answer format, and the reply is parsed as JSON.
Samples are graded concurrently: these graders wait on the network, not the CPU.
"""

from __future__ import annotations

import json
import math
import re
import time
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor

from app.graders.base import Grader
from app.graders.chat_client import ChatClient, ChatReply
from app.graders.config import GraderConfig
from app.graders.errors import GraderError
from app.graders.result import GradeResult
from app.graders.templates import render

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_SAMPLING_KEYS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "max_completions_tokens": "max_completion_tokens",
    "reasoning_effort": "reasoning_effort",
}


def _render_part(part: object, sample: dict, item: dict) -> dict:
    if isinstance(part, str):
        return {"type": "text", "text": render(part, sample, item)}
    assert isinstance(part, dict)
    kind = part["type"]
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": render(part["text"], sample, item)}
    if kind == "input_image":
        image = {"url": render(part["image_url"], sample, item)}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    audio = part["input_audio"]
    return {
        "type": "input_audio",
        "input_audio": {"data": render(audio["data"], sample, item), "format": audio["format"]},
    }


def render_messages(messages: list[dict], sample: dict, item: dict) -> list[dict]:
    """EvalItem messages rendered into Chat Completions messages."""
    rendered = []
    for message in messages:
        content = message["content"]
        parts = [
            _render_part(part, sample, item)
            for part in (content if isinstance(content, list) else [content])
        ]
        if all(part["type"] == "text" for part in parts):
            text: object = "".join(part["text"] for part in parts)
        else:
            text = parts
        # "developer" is OpenAI's newer name for "system"; not every server knows it
        role = "system" if message["role"] == "developer" else message["role"]
        rendered.append({"role": role, "content": text})
    return rendered


def parse_json_answer(content: str | None) -> object:
    """The JSON in a model's reply, tolerating a Markdown code fence around it."""
    if not content or not content.strip():
        raise GraderError("model_grader_parse_error", "the grader model returned no content")
    fenced = _FENCE.match(content)
    try:
        return json.loads(fenced.group(1) if fenced else content)
    except ValueError:
        raise GraderError("model_grader_parse_error", f"not JSON: {content[:200]!r}") from None


class ModelGrader(Grader):
    def __init__(self, definition: dict, config: GraderConfig) -> None:
        super().__init__(definition, config)
        self._client: ChatClient | None = None

    @abstractmethod
    def answer_format(self) -> tuple[str, dict]:
        """An instruction for the model and the JSON schema of its answer."""

    @abstractmethod
    def reward(self, answer: object, result: GradeResult) -> float:
        """The reward for the parsed answer; GraderError(model_grader_parse_error) if unusable."""

    def parse(self, content: str | None) -> object:
        return parse_json_answer(content)

    def grade_many(self, samples: list[dict], items: list[dict]) -> list[GradeResult]:
        if len(samples) == 1:
            return [self.grade_one(samples[0], items[0])]
        workers = max(1, min(self.config.model_max_concurrency, len(samples)))
        with ThreadPoolExecutor(max_workers=workers) as executor:
            return list(executor.map(self.grade_one, samples, items))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def grade_one(self, sample: dict, item: dict) -> GradeResult:
        result = self.new_result()
        started = time.perf_counter()
        try:
            reply = self._ask(render_messages(self.definition["input"], sample, item))
            self._record_usage(reply, result)
            if reply.refusal or reply.finish_reason == "content_filter":
                raise GraderError("model_grader_refusal_error", reply.refusal)
            result.reward = self.reward(self.parse(reply.content), result)
        except GraderError as error:
            error.apply(result.errors)
            result.reward = 0.0
        result.execution_time = time.perf_counter() - started
        return result

    def _ask(self, messages: list[dict]) -> ChatReply:
        instruction, schema = self.answer_format()
        body: dict = {
            "model": self.definition["model"],
            "messages": [*messages, {"role": "system", "content": instruction}],
        }
        if self.config.model_response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": f"{self.type}_answer", "strict": True, "schema": schema},
            }
        else:
            body["response_format"] = {"type": "json_object"}
        for key, wire_key in _SAMPLING_KEYS.items():
            value = (self.definition.get("sampling_params") or {}).get(key)
            if value is not None:
                body[wire_key] = value
        if self._client is None:
            self._client = ChatClient(self.config)
        return self._client.complete(body)

    @staticmethod
    def _record_usage(reply: ChatReply, result: GradeResult) -> None:
        result.sampled_model_name = reply.model
        result.token_usage = reply.usage
        if reply.usage is not None:
            result.token_usage_per_model[reply.model] = dict(reply.usage)


class ScoreModelGrader(ModelGrader):
    def answer_format(self) -> tuple[str, dict]:
        low, high = self.definition["range"]
        instruction = (
            'Reply with only a JSON object {"result": <number from '
            f'{low:g} to {high:g}>, "steps": [{{"description": "...", "conclusion": "..."}}]}}.'
        )
        step = {
            "type": "object",
            "properties": {"description": {"type": "string"}, "conclusion": {"type": "string"}},
            "required": ["description", "conclusion"],
            "additionalProperties": False,
        }
        schema = {
            "type": "object",
            "properties": {"steps": {"type": "array", "items": step}, "result": {"type": "number"}},
            "required": ["steps", "result"],
            "additionalProperties": False,
        }
        return instruction, schema

    def reward(self, answer: object, result: GradeResult) -> float:
        score = answer.get("result") if isinstance(answer, dict) else answer
        if isinstance(score, str):
            try:
                score = float(score)
            except ValueError:
                pass
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise GraderError("model_grader_parse_error", f"no numeric result in {answer!r}"[:300])
        low, high = self.definition["range"]
        result.scores["result"] = float(score)
        return float(min(high, max(low, score)))


class LabelModelGrader(ModelGrader):
    def answer_format(self) -> tuple[str, dict]:
        labels = self.definition["labels"]
        instruction = (
            'Reply with only a JSON object {"result": "<label>"} where <label> is one of: '
            + ", ".join(json.dumps(label) for label in labels)
            + "."
        )
        schema = {
            "type": "object",
            "properties": {"result": {"type": "string", "enum": labels}},
            "required": ["result"],
            "additionalProperties": False,
        }
        return instruction, schema

    def parse(self, content: str | None) -> object:
        if content is not None and content.strip() in self.definition["labels"]:
            return content.strip()  # a bare label, as models without JSON mode answer
        return parse_json_answer(content)

    def reward(self, answer: object, result: GradeResult) -> float:
        label = answer.get("result", answer.get("label")) if isinstance(answer, dict) else answer
        if label not in self.definition["labels"]:
            raise GraderError("model_grader_parse_error", f"{label!r} is not one of the labels")
        return 1.0 if label in self.definition["passing_labels"] else 0.0
