"""The whole OpenRFT flow with the official `openai` SDK against a running `make run`.

    OPENAI_API_KEY=sk-openrft-… python examples/run_demo.py [--base-url http://127.0.0.1:8000/v1]

Uploads the capitals task, starts a reinforcement fine-tuning job, polls it with a progress
line, prints the validation reward curve, downloads the fine-tuned adapter and chats with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from openai import OpenAI

TASK_DIR = Path(__file__).resolve().parent / "capitals"
TERMINAL = {"succeeded", "failed", "cancelled"}


def upload(client: OpenAI, name: str) -> str:
    with (TASK_DIR / name).open("rb") as handle:
        return client.files.create(file=handle, purpose="fine-tune").id


def poll(client: OpenAI, job_id: str) -> str:
    """Print one progress line per change until the job ends; return its final status."""
    last_line = ""
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        latest = client.fine_tuning.jobs.list_events(job_id, limit=1).data
        line = f"[{job.status}] {latest[0].message if latest else ''}"
        if line != last_line:
            print(line, flush=True)
            last_line = line
        if job.status in TERMINAL:
            return job.status
        time.sleep(2)


def reward_curve(client: OpenAI, job_id: str) -> list[tuple[int, float]]:
    """(step, validation reward) for the baseline and every step that evaluated, oldest first."""
    curve = []
    for event in client.fine_tuning.jobs.list_events(job_id, limit=100):
        data = event.data or {}
        # the baseline evaluation is a message event with step 0; then one metrics event a step
        if data.get("valid_reward_mean") is not None and "step" in data:
            curve.append((int(data["step"]), float(data["valid_reward_mean"])))
    return sorted(curve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"))
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--out", default="capitals-adapter.tar.gz")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url)

    training_file, validation_file = upload(client, "train.jsonl"), upload(client, "valid.jsonl")
    grader = json.loads((TASK_DIR / "grader.json").read_text())
    job = client.fine_tuning.jobs.create(
        model=args.model,
        training_file=training_file,
        validation_file=validation_file,
        suffix="capitals",
        method={"type": "reinforcement", "reinforcement": {"grader": grader}},
    )
    print(f"created {job.id}")
    status = poll(client, job.id)
    if status != "succeeded":
        job = client.fine_tuning.jobs.retrieve(job.id)
        sys.exit(f"job {status}: {job.error.message if job.error else ''}")

    curve = reward_curve(client, job.id)
    print("validation reward by step:")
    for step, reward in curve:
        print(f"  step {step:4d}  {reward:.3f}  {'#' * round(reward * 40)}")
    if curve:
        best = max(reward for _, reward in curve)
        print(f"before: {curve[0][1]:.3f}  best: {best:.3f}  change: {best - curve[0][1]:+.3f}")

    model = client.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    print(f"fine-tuned model: {model}")
    content = client.get(f"/models/{model}/content", cast_to=bytes)  # type: ignore[arg-type]
    Path(args.out).write_bytes(content)
    print(f"downloaded the adapter to {args.out} ({len(content)} bytes)")

    for question in ("What is the capital of Japan?", "What is the capital of Kenya?"):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], max_tokens=16, seed=0
        )
        print(f"{question} -> {reply.choices[0].message.content!r}")


if __name__ == "__main__":
    main()
