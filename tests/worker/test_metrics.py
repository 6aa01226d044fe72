"""A worker's Prometheus figures: per step from the metrics event, jobs and queue at scrape time."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from app.queue import make_celery, send_job
from app.settings import Settings
from tests.jobs.database import JobDatabase
from tests.services import TEST_BROKER_URL
from worker.metrics import (
    COMPLETION_TOKENS,
    GRADED_SAMPLES,
    GRADER_ERRORS,
    STEP_SECONDS,
    ClusterCollector,
    queue_depth,
    record_step,
)


def test_record_step_counts_samples_errors_tokens_and_phases() -> None:
    before = (
        GRADED_SAMPLES._value.get(),
        GRADER_ERRORS._value.get(),
        COMPLETION_TOKENS._value.get(),
    )
    data = {
        "step": 1,
        "trained_completions": 8,
        "train_error_rate": 0.25,
        "completion_tokens_mean": 5.0,
        "step_time": 2.0,
        "timing": {"step": {"sampling": 1.2, "grading": 0.3, "training": 0.5}},
    }
    record_step("reinforcement", data)
    after = (
        GRADED_SAMPLES._value.get(),
        GRADER_ERRORS._value.get(),
        COMPLETION_TOKENS._value.get(),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [8, 2, 40]
    families = text_string_to_metric_families(generate_latest().decode())
    counts = {
        s.labels["phase"]
        for f in families
        for s in f.samples
        if s.name == "openrft_worker_step_seconds_count" and s.labels["method"] == "reinforcement"
    }
    assert {"sampling", "grading", "training", "full_iteration"} <= counts
    assert STEP_SECONDS.labels("reinforcement", "sampling")._sum.get() >= 1.2


def _cluster_figures(collector: ClusterCollector) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    return {
        (s.name, s.labels.get("status", "")): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }


def test_cluster_collector_reads_jobs_by_status_and_queue_depth(
    job_database: JobDatabase, tmp_path: Path
) -> None:
    for _ in range(2):
        job_database.create_job()
    settings = Settings(data_dir=tmp_path / "broker", queue_name=f"q-{secrets.token_hex(4)}")
    celery = make_celery(settings)
    for job_id in job_database.sent:
        send_job(celery, settings, job_id)
    figures = _cluster_figures(ClusterCollector(job_database.sessions, celery, settings.queue_name))
    assert figures[("openrft_jobs", "validating_files")] == 2
    assert figures[("openrft_queue_depth", "")] == 2


@pytest.mark.skipif(not TEST_BROKER_URL, reason="OPENRFT_TEST_BROKER_URL is not set")
def test_queue_depth_on_redis(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, broker_url=TEST_BROKER_URL, queue_name=f"q-{secrets.token_hex(4)}"
    )
    celery = make_celery(settings)
    assert queue_depth(celery, settings.queue_name) == 0
    for n in range(3):
        send_job(celery, settings, f"ftjob-{n}")
    try:
        assert queue_depth(celery, settings.queue_name) == 3
    finally:
        with celery.connection_for_write() as connection:
            connection.default_channel.queue_purge(settings.queue_name)


def test_serve_metrics_exposes_worker_and_cluster_figures(
    job_database: JobDatabase, tmp_path: Path
) -> None:
    import httpx

    from tests.services import free_port
    from worker.metrics import serve_metrics

    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "broker",
        queue_name=f"q-{secrets.token_hex(4)}",
        worker_metrics_port=port,
        worker_metrics_host="127.0.0.1",
    )
    job_database.create_job()
    serve_metrics(settings, job_database.sessions, make_celery(settings))
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'openrft_jobs{status="validating_files"} 1.0' in text
    assert "openrft_queue_depth 0.0" in text
    assert "openrft_worker_steps_total" in text
