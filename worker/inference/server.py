"""The inference process's internal HTTP server (see `protocol` for the routes).

Run by `openrft inference`, and by `openrft serve` beside the API; the API reaches it at
`Settings.resolved_inference_url`. It binds 127.0.0.1 by default: it has no authentication.
torch is imported on the first request, so the process starts in a moment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.errors import error_envelope
from app.inference_protocol import (
    GenerateRequest,
    GenerateResponse,
    InferenceError,
    MergeRequest,
    MergeResponse,
    StreamEvent,
)
from app.settings import Settings, get_settings
from worker.inference.embeddings import EmbeddingsRequest, LocalEmbeddings

if TYPE_CHECKING:
    from worker.inference.engine import InferenceEngine

logger = logging.getLogger("openrft.inference")


class LazyEngine:
    """The engine, created (and torch imported) when first needed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: InferenceEngine | None = None
        self._lock = threading.Lock()

    def get(self) -> InferenceEngine:
        with self._lock:
            if self._engine is None:
                from worker.inference.engine import InferenceEngine

                self._engine = InferenceEngine(self.settings)
            return self._engine


def create_app(settings: Settings | None = None) -> FastAPI:
    engine = LazyEngine(settings or get_settings())
    embeddings = LocalEmbeddings()
    app = FastAPI(title="OpenRFT inference")
    _install_error_handlers(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # plain `def`: FastAPI runs these in its thread pool, the engine serialises them
    @app.post("/generate", response_model=GenerateResponse)
    def generate(request: GenerateRequest) -> GenerateResponse | Response:
        if not request.stream:
            return engine.get().generate(request)
        events = engine.get().stream(request)
        next(events)  # a request the engine refuses fails here, as a plain error answer
        return StreamingResponse(_ndjson(events), media_type="application/x-ndjson")

    @app.post("/merge", response_model=MergeResponse)
    def merge(request: MergeRequest) -> MergeResponse:
        return engine.get().merge(request)

    @app.post("/v1/embeddings")
    def embed(request: EmbeddingsRequest) -> dict[str, object]:
        return embeddings.embed(request)

    return app


async def _ndjson(events: Generator[StreamEvent | None, None, None]) -> AsyncIterator[str]:
    """The events one JSON object a line; the generator is closed however the stream ends (a
    caller that goes away included), which releases the engine."""
    try:
        async for event in iterate_in_threadpool(events):
            if event is not None:
                yield event.model_dump_json(exclude_defaults=True) + "\n"
    except Exception as error:
        logger.exception("streamed generation failed")
        yield StreamEvent(error=f"Inference failed: {error}").model_dump_json() + "\n"
    finally:
        await run_in_threadpool(events.close)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InferenceError)
    async def _inference_error(_request: Request, error: InferenceError) -> JSONResponse:
        return JSONResponse(
            error_envelope(error.message, param=error.param), status_code=error.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        message = f"Invalid internal request: {first.get('msg', 'invalid')}"
        return JSONResponse(
            error_envelope(message, param=".".join(location) or None), status_code=400
        )

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, error: Exception) -> JSONResponse:
        logger.exception("inference failed on %s", request.url.path)
        return JSONResponse(
            error_envelope(f"Inference failed: {error}", type="server_error"), status_code=500
        )
