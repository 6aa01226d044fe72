"""Grades per second for each grader type on this machine; prints a table.

Targets (2-core machine): string_check >= 50,000/s, python batched >= 2,000/s.
Run: .venv/bin/python bench/graders.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.graders import BatchGrader, GraderConfig, grade, make_sample  # noqa: E402
from app.graders.similarity import METRICS  # noqa: E402

TARGETS = {"string_check": 50_000, "python (batched)": 2_000}
WORDS = (
    "the a model answer city river paris london capital france england large small quick "
    "brown fox jumps over lazy dog because therefore result value number two four"
).split()
PYTHON_SOURCE = """
def grade(sample, item):
    return 1.0 if sample["output_text"].strip() == item["answer"] else 0.0
"""


def sentence(rng: random.Random, length: int = 20) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(length))


def workload(count: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(0)
    samples = [make_sample(sentence(rng)) for _ in range(count)]
    items = [{"answer": sentence(rng)} for _ in range(count)]
    return samples, items


def rate(run_batch: Callable[[], int], seconds: float) -> float:
    """Grades per second over repeated batches for at least `seconds`."""
    run_batch()  # warm up: imports, WordNet, sandboxes, the embedding model
    graded, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        graded += run_batch()
    return graded / (time.perf_counter() - started)


def batched(grader: dict, config: GraderConfig, size: int, seconds: float) -> float:
    samples, items = workload(size)
    with BatchGrader(grader, config) as batch:
        return rate(lambda: len(batch.grade(samples, items).rewards), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per row")
    args = parser.parse_args()
    config = GraderConfig()
    compared = {"input": "{{sample.output_text}}", "reference": "{{item.answer}}"}
    rows: list[tuple[str, float]] = []
    string_check = {"type": "string_check", "name": "s", "operation": "eq", **compared}
    rows.append(("string_check", batched(string_check, config, 5_000, args.seconds)))
    for metric in METRICS:
        grader = {"type": "text_similarity", "name": metric, "evaluation_metric": metric}
        size = 64 if metric == "cosine" else 500
        rows.append(
            (
                f"text_similarity {metric}",
                batched({**grader, **compared}, config, size, args.seconds),
            )
        )
    python = {"type": "python", "name": "p", "source": PYTHON_SOURCE}
    samples, items = workload(1)
    rows.append(
        (
            "python (single, fresh sandbox)",
            rate(lambda: [grade(python, samples[0], items[0], config)] and 1, args.seconds),
        )
    )
    rows.append(("python (batched)", batched(python, config, 4_000, args.seconds)))
    print(f"{'grader':<34} {'grades/s':>12} {'target':>10}  ok")
    for name, per_second in rows:
        target = TARGETS.get(name)
        verdict = "" if target is None else ("yes" if per_second >= target else "NO")
        print(f"{name:<34} {per_second:>12,.0f} {target or '':>10}  {verdict}")


if __name__ == "__main__":
    main()
