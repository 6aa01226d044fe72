"""Health, metrics and logs: what an operator's probes, scraper and log shipper read."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from app.main import create_app
from app.observability.logs import configure_logging, job_id_var, make_handler, request_id_var
from app.settings import Settings
from tests.services import LiveService, free_port


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_live_and_ready_on_a_running_service(service: LiveService) -> None:
    assert httpx.get(f"{service.root_url}/health/live").json() == {"status": "ok"}
    # the inference process loads torch after the API is up: ready follows once it answers
    deadline = time.monotonic() + 90
    while (ready := httpx.get(f"{service.root_url}/health/ready", timeout=30)).status_code != 200:
        assert time.monotonic() < deadline, ready.text
        time.sleep(0.5)
    body = ready.json()
    assert body["status"] == "ready" and body["failing"] == []
    assert set(body["checks"]) == {"database", "broker", "storage", "inference"}


def test_ready_names_each_failing_part(tmp_path: Path) -> None:
    dead = free_port()
    settings = Settings(
        data_dir=tmp_path,
        broker_url=f"redis://127.0.0.1:{dead}/0",
        inference_url=f"http://127.0.0.1:{dead}",
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failing"] == ["broker", "inference"]
    assert body["checks"]["database"] == "ok" and body["checks"]["storage"] == "ok"
    assert body["checks"]["broker"].startswith("error: ")


def test_metrics_count_requests_by_route_template(service: LiveService) -> None:
    headers = {"authorization": f"Bearer {service.api_key}"}
    missing = httpx.get(f"{service.base_url}/files/file-doesnotexist", headers=headers)
    assert missing.status_code == 404
    httpx.get(f"{service.base_url}/files", headers=headers).raise_for_status()
    text = httpx.get(f"{service.root_url}/metrics").text
    counts = {
        (labels["method"], labels["route"], labels["status"]): value
        for labels, value in _samples(text, "openrft_api_requests_total")
    }
    # ids stay out of the labels: the route template is the label
    assert counts[("GET", "/v1/files/{file_id}", "404")] >= 1
    assert counts[("GET", "/v1/files", "200")] >= 1
    assert not any("file-doesnotexist" in route for _, route, _ in counts)
    latency = _samples(text, "openrft_api_request_duration_seconds_count")
    assert any(labels["route"] == "/v1/files" and value >= 1 for labels, value in latency)


def test_worker_logs_reach_the_log(service: LiveService) -> None:
    # Celery's own logging setup used to swallow the `openrft.*` loggers' INFO records
    deadline = time.monotonic() + 60
    while "openrft.worker: worker ready on queue" not in service.log():
        assert time.monotonic() < deadline, service.log()[-3000:]
        time.sleep(0.5)


def test_json_logs_carry_request_and_job(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    handler = make_handler("json")
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger = logging.getLogger("openrft.test-json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    request_token = request_id_var.set("req_abc")
    job_token = job_id_var.set("ftjob-xyz")
    try:
        logger.info("step %d done", 3)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        request_id_var.reset(request_token)
        job_id_var.reset(job_token)
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "step 3 done" and first["level"] == "info"
    assert first["request_id"] == "req_abc" and first["job_id"] == "ftjob-xyz"
    assert first["logger"] == "openrft.test-json" and "project_id" not in first
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


def test_configure_logging_refuses_unknown_format_and_does_not_double() -> None:
    own = logging.getLogger("openrft")
    saved = (list(own.handlers), own.level, own.propagate)
    try:
        with pytest.raises(ValueError, match="json"):
            configure_logging("xml")
        configure_logging("text")
        configure_logging("text")
        assert len(own.handlers) == 1
    finally:
        own.handlers[:], own.level, own.propagate = saved


def test_a_running_app_keeps_its_startup_objects_out_of_garbage_collection(
    tmp_path: Path,
) -> None:
    import gc

    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() > 10_000  # the app, its routes and modules
    assert gc.get_freeze_count() == 0  # nothing stays pinned once it stops
