"""Does RFT with "auto" hyperparameters teach SmolLM2-135M-Instruct what a grader asks, across
tasks a new user would write, within minutes on this machine?

The suite (bench/tasks.py `task_families`): short-answer format following (capitals, the
instruction in the user turn, no worked example, 0.5 contains + 0.5 fuzzy_match), arithmetic
with an exact answer, extraction into JSON read by a python grader, classification into three
labels, and capitals in capital letters (a behaviour the base model rarely shows). Each family
has a few dozen rows, every third one held out for validation. `--families worked_example`
runs the earlier benchmark's task (a developer message and one worked example turn, ROUGE-1).

For each family and seed: validation reward before and after, the share of validation samples
at the grader's top score before and after, the share at the top among the base model's first
training samples, and minutes. Each run is appended as one JSON line to `--out` as it ends,
and the table is printed at the end (`--table FILE` prints it again from such a file).

    .venv/bin/python bench/learning.py [--families a,b] [--seeds N] [--first-seed K] [--epochs N]
        [--hyperparameters JSON] [--warm-start FIELD] [--label NAME] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from statistics import fmean
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.graders import GraderConfig  # noqa: E402
from app.jobs.hyperparameters import resolve_hyperparameters  # noqa: E402
from app.settings import get_settings  # noqa: E402
from bench.tasks import SUITE, TaskFamily, task_families  # noqa: E402
from worker.trainer.checkpoints import DirectoryCheckpointStore  # noqa: E402
from worker.trainer.job import train  # noqa: E402
from worker.trainer.models import resolve_model_dir  # noqa: E402
from worker.trainer.progress import ConsoleReporter  # noqa: E402
from worker.trainer.spec import TrainSpec, WarmStart  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"


class CurveReporter(ConsoleReporter):
    """Console output plus the validation curve: (step, reward, share at top, seconds), and
    the grades of the model RL starts from."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.perf_counter()
        self.curve: list[tuple[int, float, float, float]] = []
        self.base_model: dict[str, Any] = {}

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().on_event(level, message, data)
        if data and "base_model" in data:
            self.base_model = data["base_model"]
        if data and data.get("step") == 0 and "valid_reward_mean" in data:
            self.point(0, data)

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        super().on_step(step, total_steps, message, data)
        if "valid_reward_mean" in data:
            self.point(step, data)

    def point(self, step: int, data: dict[str, Any]) -> None:
        seconds = time.perf_counter() - self.started
        share = float(data.get("valid_reward_top_share", 0.0))
        self.curve.append((step, float(data["valid_reward_mean"]), share, seconds))


def run(
    family: TaskFamily,
    hyperparameters: dict[str, Any],
    seed: int,
    out_dir: Path,
    warm_start: dict[str, Any] | None = None,
    model: str = MODEL,
) -> CurveReporter:
    train_rows, valid_rows = family.splits()
    settings = get_settings()
    reporter = CurveReporter()
    hp = resolve_hyperparameters("reinforcement", hyperparameters, len(train_rows), len(valid_rows))
    spec = TrainSpec(
        model=model,
        model_dir=resolve_model_dir(model, settings.model_dirs, settings.model_cache_dir),
        train_rows=tuple(train_rows),
        valid_rows=tuple(valid_rows),
        method="reinforcement",
        grader=family.grader,
        hyperparameters=hp,
        seed=seed,
        work_dir=out_dir,
        grader_config=GraderConfig.from_settings(settings),
        samples_per_step=0,
        warm_start=WarmStart.resolve(warm_start, hp, len(train_rows)) if warm_start else None,
    )
    train(spec, reporter, DirectoryCheckpointStore(out_dir / "checkpoints"))
    return reporter


def record(
    label: str, family: str, seed: int, reporter: CurveReporter, overrides: dict[str, Any]
) -> dict[str, Any]:
    first, last = reporter.curve[0], reporter.curve[-1]
    return {
        "label": label,
        "family": family,
        "seed": seed,
        "hyperparameters": overrides,
        "steps": last[0],
        "reward_before": first[1],
        "reward_after": last[1],
        "reward_best": max(point[1] for point in reporter.curve),
        "top_before": first[2],
        "top_after": last[2],
        "base_train_top_share": reporter.base_model.get("top_share"),
        "minutes": last[3] / 60,
        "curve": [
            [step, reward, share, seconds] for step, reward, share, seconds in reporter.curve
        ],
    }


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        f"\n{'label':<10} {'family':<15} {'seed':>4} {'steps':>5} {'reward':>15} "
        f"{'at top':>13} {'base top':>8} {'minutes':>7}"
    )
    for r in results:
        base = r["base_train_top_share"]
        print(
            f"{r['label']:<10} {r['family']:<15} {r['seed']:>4} {r['steps']:>5} "
            f"{r['reward_before']:>6.3f} -> {r['reward_after']:<5.3f} "
            f"{r['top_before']:>5.0%} -> {r['top_after']:<4.0%} "
            f"{'-' if base is None else f'{base:.0%}':>8} {r['minutes']:>7.1f}"
        )
    by_run: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        by_run.setdefault((r["label"], r["family"]), []).append(r)
    print(f"\n{'label':<10} {'family':<15} {'seeds':>5} {'mean gain':>9} {'top after':>9}")
    for (label, family), runs in by_run.items():
        gain = fmean(r["reward_after"] - r["reward_before"] for r in runs)
        top = fmean(r["top_after"] for r in runs)
        print(f"{label:<10} {family:<15} {len(runs):>5} {gain:>+9.3f} {top:>9.0%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    families = task_families()
    parser.add_argument("--families", default=",".join(SUITE), help=", ".join(families))
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0 to N-1")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds from this one on")
    parser.add_argument("--epochs", type=int, help="n_epochs (auto: about 64 steps)")
    parser.add_argument("--hyperparameters", default="{}", help="JSON overrides of 'auto'")
    parser.add_argument("--warm-start", help="JSON method.reinforcement.warm_start")
    parser.add_argument("--model", default=MODEL, help="a catalogue model, e.g. gemma-3-270m")
    parser.add_argument("--label", default="auto")
    parser.add_argument("--out", type=Path, help="append one JSON line per run here")
    parser.add_argument("--table", type=Path, help="print the table of a results file, only")
    args = parser.parse_args()
    if args.table:
        print_table([json.loads(line) for line in args.table.read_text().splitlines() if line])
        return 0
    overrides = json.loads(args.hyperparameters)
    if args.epochs:
        overrides["n_epochs"] = args.epochs
    warm_start = json.loads(args.warm_start) if args.warm_start else None
    results = []
    with tempfile.TemporaryDirectory(prefix="openrft-learning-") as scratch:
        # every family once before any twice: a run cut short still covers the suite
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in args.families.split(","):
                out_dir = Path(scratch) / f"{name}-{seed}"
                reporter = run(families[name], overrides, seed, out_dir, warm_start, args.model)
                result = record(args.label, name, seed, reporter, overrides)
                results.append(result)
                if args.out:
                    with open(args.out, "a") as handle:
                        handle.write(json.dumps(result) + "\n")
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
