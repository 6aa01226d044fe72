"""The inference process's /v1/embeddings: graders on a host without torch embed through it."""

from __future__ import annotations

import httpx
import pytest

from app.graders.config import GraderConfig
from app.graders.embeddings import cosine_similarity
from tests.services import LiveService


@pytest.mark.slow
def test_remote_cosine_equals_local_cosine(service: LiveService) -> None:
    url = service.inference_url()
    response = httpx.post(
        f"{url}/v1/embeddings",
        json={"model": "all-MiniLM-L6-v2", "input": ["Paris", "The capital of France"]},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [row["index"] for row in body["data"]] == [0, 1]
    assert len(body["data"][0]["embedding"]) == 384
    assert body["usage"]["prompt_tokens"] > 0

    remote = GraderConfig(embeddings_base_url=f"{url}/v1")
    local = GraderConfig()
    text, reference = "Nairobi is the capital.", "The capital of Kenya is Nairobi."
    assert cosine_similarity(text, reference, remote) == pytest.approx(
        cosine_similarity(text, reference, local), abs=1e-5
    )


def test_unknown_model_and_empty_input_are_refused(service: LiveService) -> None:
    url = service.inference_url()
    unknown = httpx.post(f"{url}/v1/embeddings", json={"model": "nope", "input": "x"}, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    empty = httpx.post(
        f"{url}/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": []}, timeout=30
    )
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
