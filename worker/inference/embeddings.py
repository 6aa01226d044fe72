"""OpenAI-shaped `/v1/embeddings` from the local all-MiniLM-L6-v2, for graders on other hosts.

The API and workers in a scaled deployment point `OPENRFT_EMBEDDINGS_BASE_URL` here, so the
`cosine` metric works in an API image without torch.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from app.inference_protocol import InferenceError

SERVED_MODEL = "all-MiniLM-L6-v2"
# the grader's default names OpenAI's model; this server's stand-in answers for it, and says so
ACCEPTED_MODELS = (SERVED_MODEL, f"sentence-transformers/{SERVED_MODEL}", "text-embedding-3-large")
MAX_INPUTS = 2048


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | list[str]
    encoding_format: Literal["float"] = "float"
    user: str | None = None


class LocalEmbeddings:
    """The sentence-transformers model, loaded on first use and shared by every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: Any = None

    def _loaded(self) -> Any:
        if self._model is None:
            from app.graders.embedding_process import load_model

            self._model = load_model()
        return self._model

    def embed(self, request: EmbeddingsRequest) -> dict[str, Any]:
        if request.model not in ACCEPTED_MODELS:
            raise InferenceError(
                404, f"The model '{request.model}' does not exist; this server embeds with "
                f"{', '.join(ACCEPTED_MODELS)}.", param="model",
            )  # fmt: skip
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not texts or len(texts) > MAX_INPUTS:
            raise InferenceError(400, f"input must hold 1 to {MAX_INPUTS} strings.", param="input")
        with self._lock:
            model = self._loaded()
            vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
            tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"])
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": index, "embedding": vector.tolist()}
                for index, vector in enumerate(vectors)
            ],
            "model": SERVED_MODEL,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
