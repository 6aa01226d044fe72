"""GraderConfig: sandbox limits and the model/embeddings endpoints graders may call."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import Settings


@dataclass(frozen=True)
class GraderConfig:
    # python sandbox; defaults are the reference's (2 min, 2 GB, 256 kB of source)
    timeout_seconds: float = 120.0
    memory_bytes: int = 2 * 1024**3
    max_source_bytes: int = 256 * 1024
    file_size_bytes: int = 1024**3
    max_processes: int = 32
    allow_unisolated: bool = False
    sandbox_pool_size: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    # python sandboxes running at once in this process, and for one grader (a graders/run
    # request or a job's grader, its sub-graders included)
    max_sandboxes: int = field(default_factory=lambda: 2 * max(1, os.cpu_count() or 1))
    max_sandboxes_per_grader: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    # Paths the sandbox must never expose, even by accident (data dir, database file).
    hidden_paths: tuple[Path, ...] = ()
    # score_model / label_model: an OpenAI-compatible chat completions endpoint
    model_base_url: str | None = None
    model_api_key: str | None = None
    model_timeout_seconds: float = 120.0
    model_max_retries: int = 2
    model_max_concurrency: int = 16
    # How graders ask for JSON: "json_schema" (OpenAI's structured outputs) or "json_object"
    # (what this service's own inference endpoint enforces).
    model_response_format: str = "json_schema"
    # text_similarity cosine: OpenAI-compatible embeddings endpoint, else the local model
    embeddings_base_url: str | None = None
    embeddings_api_key: str | None = None
    embeddings_model: str = "text-embedding-3-large"

    @classmethod
    def from_settings(cls, settings: Settings, own_key: str | None = None) -> GraderConfig:
        """Build the grader configuration from the service settings.

        Model graders default to this service's own OpenAI-compatible endpoint, where they
        act as `own_key`'s project: a job's internal key, or the key of the request that runs
        the grader. An endpoint the operator named gets only the key named for it.
        """
        own_endpoint = f"http://{settings.host}:{settings.port}/v1"
        external = settings.grader_model_base_url is not None
        return cls(
            timeout_seconds=settings.grader_timeout_seconds,
            memory_bytes=settings.grader_memory_bytes,
            max_source_bytes=settings.grader_max_source_bytes,
            allow_unisolated=settings.grader_allow_unisolated,
            file_size_bytes=settings.grader_file_size_bytes,
            max_processes=settings.grader_max_processes,
            sandbox_pool_size=settings.grader_sandbox_pool_size or max(1, os.cpu_count() or 1),
            max_sandboxes=settings.grader_max_sandboxes or 2 * max(1, os.cpu_count() or 1),
            max_sandboxes_per_grader=settings.grader_max_sandboxes_per_grader
            or max(1, os.cpu_count() or 1),
            hidden_paths=(settings.resolved_data_dir,),
            model_base_url=settings.grader_model_base_url or own_endpoint,
            # an endpoint the operator named gets only the key named for it: this service's own
            # key never leaves for someone else's server
            model_api_key=settings.grader_model_api_key
            if external
            else own_key or settings.grader_model_api_key or settings.api_key,
            model_response_format="json_schema" if external else "json_object",
            embeddings_base_url=settings.embeddings_base_url,
            embeddings_api_key=settings.embeddings_api_key,
        )
