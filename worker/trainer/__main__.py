"""Train on files directly:

python -m worker.trainer --model SmolLM2-135M-Instruct --train train.jsonl --valid valid.jsonl \
    --method reinforcement --grader grader.json --hyperparameters '{"batch_size": 4}' --out DIR

Prints one line per step; writes DIR/metrics.csv, DIR/checkpoints/step-N/ and DIR/final/.
Running it again with the same DIR resumes from the latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worker.trainer.data import read_jsonl
from worker.trainer.job import train
from worker.trainer.progress import ConsoleReporter
from worker.trainer.spec import TrainSpec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m worker.trainer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", required=True, help="catalogue name or model directory")
    parser.add_argument("--train", required=True, type=Path, help="training JSONL")
    parser.add_argument("--valid", required=True, type=Path, help="validation JSONL")
    parser.add_argument(
        "--method", choices=["reinforcement", "supervised"], default="reinforcement"
    )
    parser.add_argument("--grader", type=Path, help="grader JSON file (required for reinforcement)")
    parser.add_argument("--hyperparameters", default="{}", help="JSON object; 'auto' allowed")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    grader = json.loads(args.grader.read_text()) if args.grader else None
    spec = TrainSpec(
        model=args.model,
        train_rows=read_jsonl(args.train),
        valid_rows=read_jsonl(args.valid),
        method=args.method,
        grader=grader,
        hyperparameters=json.loads(args.hyperparameters),
        seed=args.seed,
        out_dir=args.out,
        device=args.device,
        precision=args.precision,
    )
    result = train(spec, ConsoleReporter())
    print(
        json.dumps(
            {
                "status": result.status,
                "steps_done": result.steps_done,
                "trained_tokens": result.trained_tokens,
                "adapter_dir": str(result.adapter_dir),
                "best_step": result.best_step,
                "hyperparameters": result.hyperparameters,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
