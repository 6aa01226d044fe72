"""Train on files directly:

python -m worker.trainer --model SmolLM2-135M-Instruct --train train.jsonl --valid valid.jsonl \
    --method reinforcement --grader grader.json --hyperparameters '{"batch_size": 4}' --out DIR

Prints one line per step and per checkpoint; writes DIR/metrics.csv, DIR/checkpoints/step-N/
and DIR/checkpoints/final/. Running it again with the same DIR resumes from the latest
checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from app.graders import GraderConfig
from app.jobs.hyperparameters import HyperparameterError, resolve_hyperparameters
from worker.trainer.checkpoints import Checkpoint, DirectoryCheckpointStore
from worker.trainer.data import read_jsonl
from worker.trainer.job import train
from worker.trainer.models import resolve_model_dir
from worker.trainer.progress import ConsoleReporter
from worker.trainer.spec import TrainSpec


class PrintingCheckpointStore(DirectoryCheckpointStore):
    """Checkpoints in a folder, each publish and delete printed."""

    def publish(self, step: int, staged: Path) -> Checkpoint:
        checkpoint = super().publish(step, staged)
        print(f"checkpoint step {step}: {checkpoint.path}", flush=True)
        return checkpoint

    def delete(self, step: int) -> None:
        super().delete(step)
        print(f"checkpoint step {step} removed", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m worker.trainer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, help="catalogue name or model directory")
    parser.add_argument(
        "--model-dirs",
        default="",
        help=f"folders holding model directories, for --model names ('{os.pathsep}'-separated)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("data/models"),
        help="where a GGUF model is converted on first use (default: data/models, the "
        "service's own cache with the default data directory)",
    )
    parser.add_argument("--train", required=True, type=Path, help="training JSONL")
    parser.add_argument("--valid", required=True, type=Path, help="validation JSONL")
    parser.add_argument(
        "--method", choices=["reinforcement", "supervised", "dpo"], default="reinforcement"
    )
    parser.add_argument("--grader", type=Path, help="grader JSON file (required for reinforcement)")
    parser.add_argument("--hyperparameters", default="{}", help="JSON object; 'auto' allowed")
    parser.add_argument(
        "--response-format",
        type=Path,
        help="reinforcement: JSON file with OpenAI's response_format, enforced while sampling",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass (less memory, more time)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    train_rows = tuple(read_jsonl(args.train))
    valid_rows = tuple(read_jsonl(args.valid))
    try:
        hyperparameters = resolve_hyperparameters(
            args.method, json.loads(args.hyperparameters), len(train_rows), len(valid_rows)
        )
    except HyperparameterError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
    model_dirs = [Path(part) for part in args.model_dirs.split(os.pathsep) if part]
    spec = TrainSpec(
        model=args.model,
        model_dir=resolve_model_dir(args.model, model_dirs, args.cache_dir),
        train_rows=train_rows,
        valid_rows=valid_rows,
        method=args.method,
        grader=json.loads(args.grader.read_text()) if args.grader else None,
        response_format=(
            json.loads(args.response_format.read_text()) if args.response_format else None
        ),
        hyperparameters=hyperparameters,
        seed=args.seed,
        work_dir=args.out,
        grader_config=GraderConfig(),
        device=args.device,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    result = train(spec, ConsoleReporter(), PrintingCheckpointStore(args.out / "checkpoints"))
    print(
        json.dumps(
            {
                "status": result.status,
                "steps_done": result.steps_done,
                "trained_tokens": result.trained_tokens,
                "adapter_dir": str(result.adapter_dir),
                "best_step": result.best_step,
                "hyperparameters": hyperparameters.as_dict(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
