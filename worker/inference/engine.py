"""The inference engine: chat completions and adapter merges, one at a time.

Requests are serialised by one lock: the CPU is the bottleneck, and the pool's adapter
switching changes shared model state.
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.inference_protocol import (
    Choice,
    GenerateRequest,
    GenerateResponse,
    InferenceError,
    MergeRequest,
    MergeResponse,
)
from app.settings import Settings
from worker.inference.merge import merge_adapter
from worker.inference.pool import ModelPool
from worker.inference.sampling import SamplingParams, sample
from worker.trainer.models import resolve_model_dir

# the completion budget when a request sets none (OpenAI's is the rest of the context; on a CPU
# that can mean minutes)
DEFAULT_MAX_TOKENS = 512


class InferenceEngine:
    def __init__(self, settings: Settings, pool: ModelPool | None = None) -> None:
        self.settings = settings
        self.pool = pool or ModelPool()
        self._lock = threading.Lock()

    def generate(self, request: GenerateRequest) -> GenerateResponse:
        adapter_dir = _existing_adapter(request.adapter_dir)
        with (
            self._lock,
            self.pool.activate(self._base_dir(request.base_model), adapter_dir) as loaded,
        ):
            messages = [message.model_dump() for message in request.messages]
            prompt_ids = loaded.vocab.encode_chat(messages)
            room = loaded.context_length - len(prompt_ids)
            if room < 1:
                raise InferenceError(
                    400,
                    f"The messages take {len(prompt_ids)} tokens; the model's context is "
                    f"{loaded.context_length} tokens.",
                    param="messages",
                )
            params = SamplingParams(
                max_tokens=min(request.max_tokens or DEFAULT_MAX_TOKENS, room),
                temperature=request.temperature,
                top_p=request.top_p,
                n=request.n,
                seed=request.seed,
                stop=tuple(request.stop),
                json_object=request.response_format == "json_object",
            )
            completions = sample(loaded.model, loaded.vocab, prompt_ids, params)
        choices = [
            Choice(
                text=completion.text,
                finish_reason=completion.finish_reason or "length",
                completion_tokens=completion.completion_tokens,
            )
            for completion in completions
        ]
        return GenerateResponse(choices=choices, prompt_tokens=len(prompt_ids))

    def merge(self, request: MergeRequest) -> MergeResponse:
        adapter_dir = _existing_adapter(request.adapter_dir)
        assert adapter_dir is not None
        with self._lock:
            base_dir = self._base_dir(request.base_model)
            output_dir = merge_adapter(base_dir, adapter_dir, Path(request.output_dir))
        return MergeResponse(output_dir=str(output_dir))

    def _base_dir(self, base_model: str) -> Path:
        try:
            return resolve_model_dir(
                base_model, self.settings.model_dirs, self.settings.model_cache_dir
            )
        except ValueError as error:
            raise InferenceError(400, str(error), param="base_model") from error


def _existing_adapter(adapter_dir: str | None) -> Path | None:
    if adapter_dir is None:
        return None
    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise InferenceError(404, f"No adapter at {adapter_dir}.", param="adapter_dir")
    return path
