"""The inference engine: chat completions and adapter merges, one at a time.

Requests are serialised by one lock: the CPU is the bottleneck, and the pool's adapter
switching changes shared model state. Adapters are named by their artefact-store key and fetched
into this process's cache (with local storage: read in place); merged models are written to a
local staging folder and published to the merged-model store.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

from app.artifact_store import ArtifactStore, MissingArtifact, artifact_store
from app.inference_protocol import (
    GenerateRequest,
    GenerateResponse,
    InferenceError,
    MergeRequest,
    MergeResponse,
    StreamEvent,
)
from app.settings import Settings
from app.tool_calls import template_messages
from worker.base_model_dirs import base_model_dir
from worker.constrained import Constraint, ConstraintError
from worker.inference.answers import AnswerRules, ChoiceStream, final_choice
from worker.inference.merge import merge_adapter
from worker.inference.pool import LoadedBase, ModelPool
from worker.inference.sampling import Completion, SamplingParams, sample, sample_steps
from worker.inference.tool_choice import forced_call
from worker.trainer.vision import VisionPrompt, encode_vision_prompt

# the completion budget when a request sets none (OpenAI's is the rest of the context; on a CPU
# that can mean minutes)
DEFAULT_MAX_TOKENS = 512


class InferenceEngine:
    def __init__(self, settings: Settings, pool: ModelPool | None = None) -> None:
        self.settings = settings
        self.pool = pool or ModelPool()
        self.adapters = artifact_store(settings, "checkpoints", "inference")
        self.merged = artifact_store(settings, "merged", "inference")
        self._lock = threading.Lock()

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        with self._prepared(request) as (loaded, prompt, rules):
            rows = sample(loaded.model, loaded.vocab, prompt.ids, rules.params, prompt.pixel_values)
        choices = [final_choice(row, rules) for row in rows]
        return GenerateResponse(choices=choices, prompt_tokens=len(prompt.ids))

    def stream(self, request: GenerateRequest) -> Generator[StreamEvent | None, None, None]:
        """`generate` as events while sampling runs; the first item, None, comes once the
        request has been checked, so that a bad request fails before anything is streamed."""
        with self._prepared(request) as (loaded, prompt, rules):
            yield None
            streams = [ChoiceStream(index, loaded.vocab, rules) for index in range(rules.params.n)]
            rows: list[Completion] = []
            steps = sample_steps(
                loaded.model, loaded.vocab, prompt.ids, rules.params, prompt.pixel_values
            )
            for rows in steps:
                for stream, row in zip(streams, rows, strict=True):
                    yield from stream.events(row)
        completion_tokens = sum(row.completion_tokens for row in rows)
        yield StreamEvent(prompt_tokens=len(prompt.ids), completion_tokens=completion_tokens)

    @contextmanager
    def _prepared(
        self, request: GenerateRequest
    ) -> Iterator[tuple[LoadedBase, VisionPrompt, AnswerRules]]:
        """The model ready (this engine's lock held), the prompt (its ids, and its images'
        pixels for a vision model) and the answer rules."""
        with (
            self._lock,
            _adapter(self.adapters, request.adapter_key) as adapter_dir,
            self.pool.activate(self._base_dir(request.base_model), adapter_dir) as loaded,
        ):
            yield loaded, *_plan(loaded, request)

    def merge(self, request: MergeRequest) -> MergeResponse:
        with self._lock:
            if self.merged.exists(request.output_key):
                return MergeResponse(output_key=request.output_key)
            base_dir = self._base_dir(request.base_model)
            scratch = self.settings.resolved_data_dir / "tmp"
            scratch.mkdir(parents=True, exist_ok=True)
            with _adapter(self.adapters, request.adapter_key) as adapter_dir:
                assert adapter_dir is not None
                staging = Path(tempfile.mkdtemp(prefix="merge-", dir=scratch))
                try:
                    output_dir = merge_adapter(base_dir, adapter_dir, staging / "model")
                    self.merged.put_dir(output_dir, request.output_key)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        return MergeResponse(output_key=request.output_key)

    def _base_dir(self, base_model: str) -> Path:
        try:
            return base_model_dir(self.settings, base_model, "inference")
        except ValueError as error:
            raise InferenceError(400, str(error), param="base_model") from error


def _plan(loaded: LoadedBase, request: GenerateRequest) -> tuple[VisionPrompt, AnswerRules]:
    vocab = loaded.vocab
    uses_tools = bool(request.tools) or any(
        message.tool_calls or message.role == "tool" for message in request.messages
    )
    if uses_tools and vocab.tool_format is None:
        param = "tools" if request.tools else "messages"
        raise InferenceError(
            400,
            f"Model '{request.base_model}' has a chat template without tool support: it cannot "
            "be given tools, tool calls or tool messages.",
            param=param,
        )
    prompt = _encode(loaded, request)
    prompt_ids = prompt.ids
    room = loaded.context_length - len(prompt_ids)
    if room < 1:
        raise InferenceError(
            400,
            f"The messages take {len(prompt_ids)} tokens; the model's context is "
            f"{loaded.context_length} tokens.",
            param="messages",
        )
    # a forced call is the whole answer: its grammar stands in for any response format
    constraint = _constraint(request)
    if request.forced_tool is not None and vocab.tool_format is not None:
        try:
            constraint = forced_call(vocab.tool_format, request.tools, request.forced_tool)
        except ConstraintError as error:
            raise InferenceError(400, str(error), param="tools") from None
    params = SamplingParams(
        max_tokens=min(request.max_tokens or DEFAULT_MAX_TOKENS, room),
        temperature=request.temperature,
        top_p=request.top_p,
        n=request.n,
        seed=request.seed,
        stop=tuple(request.stop) + vocab.turn_stops,
        constraint=constraint,
        logprobs=request.logprobs,
        top_logprobs=request.top_logprobs,
    )
    rules = AnswerRules(
        params=params,
        tool_format=vocab.tool_format if request.tools else None,
        parallel_tool_calls=request.parallel_tool_calls,
    )
    return prompt, rules


def _encode(loaded: LoadedBase, request: GenerateRequest) -> VisionPrompt:
    """The prompt's token ids through the chat template; a vision model's through its
    processor, each image written as its placeholder tokens."""
    dumped = [message.model_dump() for message in request.messages]
    if loaded.processor is not None:
        row = {"messages": dumped, "tools": request.tools}
        return encode_vision_prompt(loaded.processor, row)
    if any(isinstance(message.content, list) for message in request.messages):
        raise InferenceError(
            400, f"Model '{request.base_model}' reads text only.", param="messages"
        )
    return VisionPrompt(loaded.vocab.encode_chat(template_messages(dumped), request.tools), None)


def _constraint(request: GenerateRequest) -> Constraint | None:
    """The request's response_format as a compiled grammar; one it cannot enforce is a 400."""
    try:
        return Constraint.from_response_format(request.response_format_object())
    except ConstraintError as error:
        param = "response_format"
        if request.response_format == "json_schema":
            param = "response_format.json_schema.schema"
        raise InferenceError(400, str(error), param=param) from None


@contextmanager
def _adapter(store: ArtifactStore, key: str | None) -> Iterator[Path | None]:
    """The adapter of `key` on this disk while the block runs (None: no adapter)."""
    if key is None:
        yield None
        return
    try:
        with store.local_dir(key) as path:
            if not (path / "adapter_config.json").is_file():
                raise MissingArtifact(key)
            yield path
    except MissingArtifact:
        raise InferenceError(404, f"No adapter stored as {key}.", param="adapter_key") from None
