"""Settings: every OPENRFT_ variable, with defaults for the embedded single-machine mode."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENRFT_", extra="ignore")

    data_dir: Path = Path("./data")
    # Defaults derive from data_dir: SQLite file and a file-system Celery transport.
    database_url: str | None = None
    broker_url: str | None = None
    api_key: str | None = None
    # the admin API (/v1/organization/projects): off unless set; never a project's key
    admin_key: str | None = None
    model_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    # API processes (uvicorn workers); more where the machine has the cores
    api_workers: int = Field(default=1, ge=1)
    port: int = 8000
    max_upload_bytes: int = 512 * 1024 * 1024
    # s3://bucket/prefix: uploads and result files in an S3-compatible store (credentials and
    # AWS_ENDPOINT_URL from the usual AWS_* variables); unset: under data_dir
    storage_url: str | None = None
    # with storage_url: each process keeps what it fetched (checkpoints, adapters, merged models)
    # in a local cache of at most this many bytes, evicting the least recently used
    cache_max_bytes: int = Field(default=20 * 1000**3, gt=0)
    # /v1/uploads (OpenAI's limits): the whole file, each part, and how long an upload may
    # stay incomplete before it expires and its parts are removed
    upload_max_bytes: int = 8 * 1024**3
    upload_part_max_bytes: int = 64 * 1024**2
    upload_expiry_seconds: int = Field(default=3600, ge=1)
    queue_name: str = "openrft"
    # "text" for people, "json" for log shippers: one object per line with request, project, job
    log_format: Literal["text", "json"] = "text"
    # a worker's Prometheus endpoint; off unless a port is given (several workers may share a host)
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "0.0.0.0"
    # the inference process (torch lives there, never in the API); `serve` starts one here
    inference_url: str | None = None
    inference_port: int = 8001
    # a job whose worker stops renewing its lease for this long is taken over by another
    job_lease_seconds: float = 60.0
    job_visibility_timeout_seconds: int = 3600
    # a job waiting in validating_files/queued with no worker on it this long is sent again
    # (its message may have been lost); duplicates are harmless
    job_resend_seconds: float = 300.0
    # after this many attempts whose worker was lost (killed, out of memory) the job fails
    max_job_attempts: int = Field(default=3, ge=1)
    # a training step whose samples the grader failed on more often than this fails the job
    max_grader_error_rate: float = 0.5
    # training workers report their device and memory this often (the workers table); one
    # silent for four periods no longer counts when new jobs are placed
    worker_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # the memory a worker offers to jobs, instead of what its device has (a shared host)
    worker_memory_bytes: int | None = Field(default=None, gt=0)
    # graded completions kept per training step and per validation run for the samples view
    # (whole prompt groups; 0 keeps none)
    samples_per_step: int = Field(default=16, ge=0)

    # python grader sandbox (reference defaults: 2 min, 2 GB, 256 kB of source)
    grader_timeout_seconds: float = 120.0
    grader_memory_bytes: int = 2 * 1024**3
    grader_max_source_bytes: int = 256 * 1024
    grader_allow_unisolated: bool = False
    grader_file_size_bytes: int = 1024**3  # the reference's 1 GB of disk
    grader_max_processes: int = 32
    # per-project quotas (unset: none): jobs validating/queued/running at once, bytes of files
    max_active_jobs_per_project: int | None = Field(default=None, ge=1)
    max_stored_bytes_per_project: int | None = Field(default=None, ge=1)
    # requests per minute per API key (token bucket, per API process); unset: no limit
    rate_limit_requests_per_minute: int | None = Field(default=None, ge=1)
    # /graders/run: slots of its own thread pool, and how many one project may hold at once
    grader_runs_total: int = Field(default=16, ge=1)
    grader_runs_per_project: int = Field(default=4, ge=1)
    grader_sandbox_pool_size: int = 0  # warm sandboxes per python grader; 0 = one per CPU core
    # python sandboxes running at once per process (0: twice the CPU cores) and per grader, its
    # sub-graders included (0: one per CPU core)
    grader_max_sandboxes: int = Field(default=0, ge=0)
    grader_max_sandboxes_per_grader: int = Field(default=0, ge=0)
    # score_model / label_model graders: an OpenAI-compatible chat completions endpoint
    grader_model_base_url: str | None = None
    grader_model_api_key: str | None = None
    # text_similarity cosine: an OpenAI-compatible embeddings endpoint (local model if unset)
    embeddings_base_url: str | None = None
    embeddings_api_key: str | None = None

    # webhooks: endpoints on loopback, link-local or private addresses are refused unless an
    # operator allows them (an endpoint is a URL a user chose, which the service then calls)
    webhook_allow_private: bool = False
    # a failed delivery is tried again after base * 2^(n-1) seconds (capped, with jitter) until
    # the event is older than the retry window
    webhook_retry_base_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_max_delay_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_window_seconds: float = Field(default=86400.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # how often each worker looks for deliveries that are due
    webhook_poll_seconds: float = Field(default=1.0, gt=0)

    @field_validator("model_dirs", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.replace(",", os.pathsep).split(os.pathsep)
            return [Path(part) for part in parts if part.strip()]
        return value

    @property
    def worker_stale_seconds(self) -> float:
        return 4 * self.worker_heartbeat_seconds

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'openrft.db'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def resolved_inference_url(self) -> str:
        return self.inference_url or f"http://127.0.0.1:{self.inference_port}"

    @property
    def uploads_dir(self) -> Path:
        return self.resolved_data_dir / "files"

    @property
    def checkpoints_dir(self) -> Path:
        return self.resolved_data_dir / "checkpoints"

    @property
    def model_cache_dir(self) -> Path:
        return self.resolved_data_dir / "models"

    @property
    def broker_dir(self) -> Path:
        return self.resolved_data_dir / "broker"


@lru_cache
def get_settings() -> Settings:
    return Settings()
