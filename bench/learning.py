"""Does RFT teach SmolLM2-135M-Instruct a behaviour it lacks, within minutes on this machine?

Task: "What is the capital of X?" answered with the city's name alone, as a developer message
asks, with one worked example as an earlier turn. The model knows many capitals but rarely
gives the bare name: mostly it answers with the wrong word, sometimes in a sentence. Graded
with partial credit (ROUGE-1 overlap with the name: the bare name scores 1, "The capital of
France is Paris." about 0.3), with "auto" hyperparameters. Then SFT on the same rows (with the
answer as the assistant message), and, to show why partial credit matters, a few RFT steps
with an exact-match grader.

Prints the validation curves and the before/after figures of RFT from several seeds (how soon
a run moves from the sentence to the name varies from seed to seed) and of SFT.
Target: RFT validation reward up by at least 0.4 absolute within 15 minutes.

    .venv/bin/python bench/learning.py [--skip-sft] [--skip-exact] [--seeds N]

`--model gemma-3-270m` runs another catalogue model; `--task examples` trains on
examples/capitals (its files and its multi grader) instead of the task above.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.graders import GraderConfig  # noqa: E402
from app.jobs.hyperparameters import resolve_hyperparameters  # noqa: E402
from app.settings import get_settings  # noqa: E402
from bench.tasks import EXACT_GRADER, ROUGE_GRADER, capital_rows, split  # noqa: E402
from worker.trainer.checkpoints import DirectoryCheckpointStore  # noqa: E402
from worker.trainer.job import train  # noqa: E402
from worker.trainer.models import resolve_model_dir  # noqa: E402
from worker.trainer.progress import ConsoleReporter  # noqa: E402
from worker.trainer.spec import TrainResult, TrainSpec  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "capitals"
N_VALID = 16
TARGET_GAIN = 0.4
TARGET_MINUTES = 15


class CurveReporter(ConsoleReporter):
    """Console output plus the validation curve: (step, valid_reward_mean, seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.perf_counter()
        self.curve: list[tuple[int, float, float]] = []
        self.warnings: list[str] = []

    def on_event(self, level: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().on_event(level, message, data)
        if level == "warn":
            self.warnings.append(message)
        if data and data.get("step") == 0 and "valid_reward_mean" in data:
            self.curve.append((0, data["valid_reward_mean"], time.perf_counter() - self.started))

    def on_step(self, step: int, total_steps: int, message: str, data: dict[str, Any]) -> None:
        super().on_step(step, total_steps, message, data)
        if "valid_reward_mean" in data:
            self.curve.append((step, data["valid_reward_mean"], time.perf_counter() - self.started))


def example_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """examples/capitals: its training rows, validation rows and grader."""

    def rows(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (EXAMPLES / name).read_text().splitlines() if line]

    grader = json.loads((EXAMPLES / "grader.json").read_text())
    return rows("train.jsonl"), rows("valid.jsonl"), grader


def run(
    method: str,
    grader: dict,
    hyperparameters: dict,
    out_dir: Path,
    seed: int = 0,
    model: str = MODEL,
    rows: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
) -> tuple[TrainResult, CurveReporter]:
    with_answer = method == "supervised"
    train_rows, valid_rows = rows or split(capital_rows(with_answer=with_answer), N_VALID)
    reporter = CurveReporter()
    settings = get_settings()
    spec = TrainSpec(
        model=model,
        model_dir=resolve_model_dir(model, settings.model_dirs, settings.model_cache_dir),
        train_rows=tuple(train_rows),
        valid_rows=tuple(valid_rows),
        method=method,
        grader=grader,
        hyperparameters=resolve_hyperparameters(
            method, hyperparameters, len(train_rows), len(valid_rows)
        ),
        seed=seed,
        work_dir=out_dir,
        grader_config=GraderConfig.from_settings(settings),
    )
    return train(spec, reporter, DirectoryCheckpointStore(out_dir / "checkpoints")), reporter


def print_curve(title: str, reporter: CurveReporter) -> None:
    print(f"\n{title}: validation reward by step")
    print(f"{'step':>6} {'valid_reward_mean':>18} {'minutes':>8}")
    for step, reward, seconds in reporter.curve:
        print(f"{step:>6} {reward:>18.3f} {seconds / 60:>8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-sft", action="store_true")
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--hyperparameters", default="{}", help="JSON overrides of 'auto'")
    parser.add_argument("--seeds", type=int, default=4, help="RFT runs, seeds 0 to N-1")
    parser.add_argument("--model", default=MODEL, help="a catalogue model")
    parser.add_argument("--task", choices=("capitals", "examples"), default="capitals")
    args = parser.parse_args()

    overrides = json.loads(args.hyperparameters)
    rft_grader, rows = ROUGE_GRADER, None
    if args.task == "examples":
        train_rows, valid_rows, rft_grader = example_rows()
        rows = (train_rows, valid_rows)
    summary = []
    with tempfile.TemporaryDirectory(prefix="openrft-learning-") as scratch:
        for seed in range(args.seeds):
            out_dir = Path(scratch) / f"rft-{seed}"
            _, curve = run("reinforcement", rft_grader, overrides, out_dir, seed, args.model, rows)
            print_curve(f"RFT seed {seed} (ROUGE-1 partial credit, auto hyperparameters)", curve)
            summary.append((f"RFT s{seed}", curve))
        if not args.skip_sft:
            _, sft_curve = run("supervised", ROUGE_GRADER, {}, Path(scratch) / "sft", 0, args.model)
            print_curve("SFT (same rows, answer as the assistant message)", sft_curve)
            summary.append(("SFT s0", sft_curve))
        if not args.skip_exact:
            exact_hp = {"n_epochs": 1, "batch_size": 4, "eval_interval": 100}
            _, exact_curve = run(
                "reinforcement", EXACT_GRADER, exact_hp, Path(scratch) / "exact", 0, args.model
            )
            no_signal = [w for w in exact_curve.warnings if "no learning signal" in w]
            print(f"\nExact-match grader: {len(no_signal)} of 8 steps reported no learning signal")
            if no_signal:
                print(f"  e.g. {no_signal[0]}")

    print(f"\n{'run':<8} {'before':>8} {'after':>8} {'best':>8} {'gain':>8} {'minutes':>8}")
    met = 0
    for name, curve in summary:
        before, after = curve.curve[0][1], curve.curve[-1][1]
        best = max(reward for _, reward, _ in curve.curve)
        minutes = curve.curve[-1][2] / 60
        print(
            f"{name:<8} {before:>8.3f} {after:>8.3f} {best:>8.3f} {after - before:>+8.3f} "
            f"{minutes:>8.1f}"
        )
        if name.startswith("RFT"):
            met += after - before >= TARGET_GAIN and minutes <= TARGET_MINUTES
    print(
        f"\nRFT target (+{TARGET_GAIN} within {TARGET_MINUTES} min): "
        f"met in {met} of {args.seeds} seeds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
