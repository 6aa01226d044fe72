"""graders/run under load: slow graders get their own bounded pool, a project over its share
gets OpenAI's 429 with retry-after, and other projects' requests stay fast meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from app.graders.run_limits import Busy, GraderRunLimiter
from tests.conftest import make_client
from tests.loops import run_in_fresh_loop
from tests.services import LiveService

SLOW_PYTHON = {
    "type": "python",
    "name": "slow",
    "source": "import time\n\ndef grade(sample, item):\n    time.sleep(4)\n    return 1.0\n",
}


def _run(client: openai.OpenAI) -> float:
    return client.fine_tuning.alpha.graders.run(
        grader=SLOW_PYTHON, model_sample="x", item={}
    ).reward


def test_a_project_over_its_share_gets_429_and_others_stay_fast(service: LiveService) -> None:
    busy = make_client(service, service.key_for("busy-project"))
    other = make_client(service, service.key_for("quiet-project"))
    per_project = 4  # the default OPENRFT_GRADER_RUNS_PER_PROJECT
    with ThreadPoolExecutor(per_project) as pool:
        running = [pool.submit(_run, busy) for _ in range(per_project)]
        time.sleep(1.0)  # all four are in their slots
        with pytest.raises(openai.RateLimitError) as refused:
            _run(busy)
        assert refused.value.status_code == 429
        assert refused.value.code == "rate_limit_exceeded"
        assert "4 grader runs in progress" in refused.value.message
        assert int(refused.value.response.headers["retry-after"]) >= 1
        # the other project is not held up: its list calls and its own grader run go through
        started = time.monotonic()
        for _ in range(5):
            other.files.list()
        assert time.monotonic() - started < 3.0
        assert other.fine_tuning.alpha.graders.run(
            grader={"type": "string_check", "name": "s", "input": "a", "reference": "a",
                    "operation": "eq"},
            model_sample="a",
        ).reward == 1.0  # fmt: skip
        assert [future.result() for future in running] == [1.0] * per_project
    # the slots came back
    assert _run(busy) == 1.0


def test_limiter_bounds_total_and_per_project_and_frees_slots_of_abandoned_runs() -> None:
    limiter = GraderRunLimiter(total=3, per_project=2)
    release = threading.Event()

    async def scenario() -> None:
        first = asyncio.ensure_future(limiter.run("a", release.wait))
        second = asyncio.ensure_future(limiter.run("a", release.wait))
        third = asyncio.ensure_future(limiter.run("b", release.wait))
        while limiter.running("a") + limiter.running("b") < 3:  # each task took its slot
            await asyncio.sleep(0.01)
        with pytest.raises(Busy, match="project already has 2"):
            await limiter.run("a", lambda: True)
        with pytest.raises(Busy, match="maximum of 3"):
            await limiter.run("c", lambda: True)
        # a client that goes away does not free a slot whose work still runs
        first.cancel()
        await asyncio.sleep(0.05)
        assert limiter.running("a") == 2
        release.set()
        await asyncio.gather(second, third)
        # the abandoned run's slot comes back when its thread ends, whenever that is
        deadline = time.monotonic() + 10
        while limiter.running("a") and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert limiter.running("a") == 0 and limiter.running("b") == 0
        assert await limiter.run("c", lambda: 42) == 42

    try:
        run_in_fresh_loop(scenario())
    finally:
        limiter.shutdown()
