"""Prometheus metrics of a worker: its steps, samples, graders and tokens, plus cluster gauges.

The per-step figures come from each step's metrics event, so they are exactly what the user sees.
Jobs by status and the queue depth are read when Prometheus scrapes, from the database and broker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from amqp.exceptions import ChannelError
from celery import Celery
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.settings import Settings
from app.tables import Job

logger = logging.getLogger("openrft.worker")

STEP_SECONDS = Histogram(
    "openrft_worker_step_seconds",
    "Time per training step, by phase (sampling, grading, training, eval, full_iteration).",
    ("method", "phase"),
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
STEPS = Counter("openrft_worker_steps_total", "Training steps run.", ("method",))
GRADED_SAMPLES = Counter(
    "openrft_worker_graded_samples_total", "Training samples the grader scored."
)
GRADER_ERRORS = Counter(
    "openrft_worker_grader_errors_total", "Training samples the grader failed to score."
)
COMPLETION_TOKENS = Counter(
    "openrft_worker_completion_tokens_total", "Tokens sampled for training completions."
)
JOBS_RUN = Counter(
    "openrft_worker_jobs_total",
    "Job attempts this worker ended, by the status it left.",
    ("status",),
)


def record_step(method: str, data: dict[str, Any]) -> None:
    """Counts one step from its metrics event data."""
    STEPS.labels(method).inc()
    phases = dict((data.get("timing") or {}).get("step") or {})
    if "step_time" in data:
        phases["full_iteration"] = data["step_time"]
    for phase, seconds in phases.items():
        STEP_SECONDS.labels(method, phase).observe(float(seconds))
    samples = int(data.get("trained_completions") or 0)
    if samples:
        GRADED_SAMPLES.inc(samples)
        GRADER_ERRORS.inc(round(float(data.get("train_error_rate") or 0.0) * samples))
        COMPLETION_TOKENS.inc(float(data.get("completion_tokens_mean") or 0.0) * samples)


class ClusterCollector(Collector):
    """Jobs by status and messages waiting in the training queue, read at scrape time."""

    def __init__(self, sessions: sessionmaker[Session], celery: Celery, queue: str) -> None:
        self.sessions = sessions
        self.celery = celery
        self.queue = queue

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("openrft_jobs", "Jobs by status, all projects.", labels=["status"])
        try:
            with self.sessions() as session:
                rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
                for status, count in rows:
                    jobs.add_metric([status], count)
        except Exception:
            logger.warning("could not count jobs for metrics", exc_info=True)
        yield jobs
        depth = GaugeMetricFamily("openrft_queue_depth", "Messages waiting in the job queue.")
        try:
            depth.add_metric([], queue_depth(self.celery, self.queue))
        except Exception:
            logger.warning("could not read the queue depth for metrics", exc_info=True)
        yield depth


def queue_depth(celery: Celery, queue: str) -> int:
    with celery.connection_for_read() as connection:
        try:
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
        except ChannelError:
            return 0  # nothing was ever sent to it, so nothing waits
        return int(declared.message_count)


_cluster: ClusterCollector | None = None


def serve_metrics(settings: Settings, sessions: sessionmaker[Session], celery: Celery) -> None:
    """Starts the metrics endpoint when the operator gave it a port."""
    global _cluster
    if not settings.worker_metrics_port:
        return
    if _cluster is not None:  # started again in this process: the newest settings win
        REGISTRY.unregister(_cluster)
    _cluster = ClusterCollector(sessions, celery, settings.queue_name)
    REGISTRY.register(_cluster)
    try:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    except OSError as error:  # e.g. a second worker on this host with the same port
        logger.warning(
            "worker metrics not served on port %d: %s", settings.worker_metrics_port, error
        )
        return
    logger.info(
        "worker metrics on http://%s:%d/metrics",
        settings.worker_metrics_host,
        settings.worker_metrics_port,
    )
