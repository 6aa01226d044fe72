"""GRPO step time: our trainer against TRL's GRPOTrainer, side by side in one run.

Reference configuration: SmolLM2-135M-Instruct, LoRA r=16 alpha=32 on all linear layers,
4 prompts x 8 completions per step, 24 completion tokens, beta 0, one update per batch.
TRL runs in fp32 on the CPU (`use_cpu=True`); ours with its default precision (fp32 on CPUs
without native bf16). Both grade with ROUGE-1 against the reference answer.

The two alternate in blocks (TRL, ours, TRL, ours, ...) so that load from other processes hits
both alike. Each block starts from the base model with a fresh adapter (completions shorten as
a run learns, so later steps would flatter whichever ran longer); the first step of each block
is a warm-up and is not counted. Prints the median step time of each, the ratio, and where our
time goes against the floor set by the measured matrix-multiply rate.

    .venv/bin/pip install -e ".[bench]"   # TRL, benchmark-only
    .venv/bin/python bench/trainer.py [--rounds 2] [--steps 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from app.graders import BatchGrader, GraderConfig  # noqa: E402
from app.jobs.hyperparameters import resolve_hyperparameters  # noqa: E402
from app.settings import get_settings  # noqa: E402
from bench.tasks import ROUGE_GRADER, capital_rows  # noqa: E402
from worker.trainer.methods import Reinforcement  # noqa: E402
from worker.trainer.models import load_policy, resolve_model_dir  # noqa: E402

MODEL = "SmolLM2-135M-Instruct"
PROMPTS, GROUP, TOKENS, RANK = 4, 8, 24, 16


def reference_hyperparameters() -> dict[str, Any]:
    return {
        "batch_size": PROMPTS,
        "group_size": GROUP,
        "max_completion_tokens": TOKENS,
        "lora_rank": RANK,
        "lora_alpha": 2 * RANK,
        "beta": 0.0,
        "num_iterations": 1,
        "sampling_rounds": 1,  # TRL samples each step's own batch only
        "n_epochs": 50,
    }


class Ours:
    """Our trainer's step, exactly as `train()` runs it (the Reinforcement method object)."""

    def __init__(self, model_dir: Path, rows: list[dict], grader: BatchGrader) -> None:
        hp = resolve_hyperparameters("reinforcement", reference_hyperparameters(), len(rows), 1)
        torch.manual_seed(0)
        self.policy = load_policy(model_dir, hp.lora_rank, hp.lora_alpha)
        optimizer = torch.optim.AdamW(self.policy.trainable_parameters(), lr=hp.learning_rate)
        self.method = Reinforcement(self.policy, optimizer, grader, rows, rows[:1], hp, seed=0)
        self.step = 0

    def run(self, steps: int) -> list[dict[str, float]]:
        timings = []
        for _ in range(steps):
            self.step += 1
            started = time.perf_counter()
            report = self.method.train_step(self.step)
            timings.append(
                report.timing
                | {
                    "total": time.perf_counter() - started,
                    "completion_tokens": report.data["trl"]["completions/mean_length"],
                }
            )
        return timings


class TRL:
    """TRL's GRPOTrainer on the same model, data and reward; step time from a callback."""

    def __init__(self, model_dir: Path, rows: list[dict], grader: BatchGrader) -> None:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
        from trl import GRPOConfig, GRPOTrainer

        from app.graders import make_sample

        self.step_times: list[float] = []
        times = self.step_times

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self.started = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                times.append(time.perf_counter() - self.started)

        def reward(completions: list, answer: list[str], **kwargs: Any) -> list[float]:
            texts = [completion[0]["content"] for completion in completions]
            samples = [make_sample(text) for text in texts]
            return grader.grade(samples, [{"answer": a} for a in answer]).rewards

        dataset = Dataset.from_list(
            [{"prompt": row["messages"], "answer": row["answer"]} for row in rows]
        )
        self.make = lambda steps: GRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
            reward_funcs=reward,
            args=GRPOConfig(
                output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "trl-bench"),
                per_device_train_batch_size=PROMPTS * GROUP,
                num_generations=GROUP,
                max_completion_length=TOKENS,
                gradient_accumulation_steps=1,
                num_iterations=1,
                beta=0.0,
                learning_rate=1e-4,
                max_steps=steps,
                use_cpu=True,
                bf16=False,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                seed=0,
                disable_tqdm=True,
            ),
            train_dataset=dataset,
            processing_class=AutoTokenizer.from_pretrained(model_dir),
            peft_config=LoraConfig(
                r=RANK, lora_alpha=2 * RANK, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
            callbacks=[StepTimer()],
        )

    def run(self, steps: int) -> list[float]:
        self.step_times.clear()
        self.make(steps).train()
        return list(self.step_times)


def matmul_rate(rows: int, inner: int = 576, outer: int = 1536, repeats: int = 20) -> float:
    """GFLOP/s of fp32 x @ W.T at the model's shapes (rows = tokens in flight)."""
    x, w = torch.randn(rows, inner), torch.randn(outer, inner)
    for _ in range(3):
        torch.nn.functional.linear(x, w)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(x, w)
    return 2 * rows * inner * outer * repeats / (time.perf_counter() - started) / 1e9


def step_flops(config: Any, prompt_tokens: float, completion_tokens: float) -> dict[str, float]:
    """Matmul FLOPs of one of our steps (LoRA terms left out): sampling = prompt prefill (once
    per prompt) plus one decode position per completion token, with a logits row each;
    training = the packed forward (each prompt once, its completions after it, logits only
    where a completion token is predicted) and the gradient with respect to its activations,
    which costs as much again."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = hidden // heads
    per_layer = hidden * (heads * head_dim) * 2 + hidden * (kv_heads * head_dim) * 2
    per_layer += 3 * hidden * config.intermediate_size
    body = 2 * layers * per_layer  # FLOPs per token through the decoder blocks
    head = 2 * hidden * config.vocab_size  # FLOPs per logits row
    rows = PROMPTS * GROUP * completion_tokens
    sampling = PROMPTS * prompt_tokens * body + PROMPTS * head + rows * (body + head)
    training = 2 * (PROMPTS * prompt_tokens * body + rows * (body + head))
    return {"sampling": sampling, "training": training}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per block (+1 warm-up)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--ours-only", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = get_settings()
    model_dir = resolve_model_dir(MODEL, settings.model_dirs, settings.model_cache_dir)
    rows = capital_rows()
    print(f"torch threads {torch.get_num_threads()}, model {model_dir}")
    rates = {"decode (32 rows)": matmul_rate(32), "batched (768 rows)": matmul_rate(768)}

    ours_steps: list[dict[str, float]] = []
    trl_steps: list[float] = []
    with BatchGrader(ROUGE_GRADER, GraderConfig.from_settings(settings)) as grader:
        trl = None if args.ours_only else TRL(model_dir, rows, grader)
        for round_number in range(args.rounds):
            ours = Ours(model_dir, rows, grader)
            if trl is not None:
                block = trl.run(args.steps + 1)[1:]
                trl_steps += block
                print(
                    f"round {round_number + 1} TRL  steps: " + " ".join(f"{t:.2f}" for t in block)
                )
            block_ours = ours.run(args.steps + 1)[1:]
            ours_steps += block_ours
            print(
                f"round {round_number + 1} ours steps: "
                + " ".join(f"{t['total']:.2f}" for t in block_ours)
            )
    rates["decode after"] = matmul_rate(32)
    rates["batched after"] = matmul_rate(768)
    report(ours, ours_steps, trl_steps, rates)
    return 0


def report(
    ours: Ours, ours_steps: list[dict[str, float]], trl_steps: list[float], rates: dict[str, float]
) -> None:
    def median(key: str) -> float:
        return statistics.median(step[key] for step in ours_steps)

    ours_time = median("total")
    print("\nmatmul rate (fp32, GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))
    print(f"\n{'':<28}{'median s/step':>14}")
    if trl_steps:
        trl_time = statistics.median(trl_steps)
        print(f"{'TRL GRPOTrainer 1.16':<28}{trl_time:>14.2f}")
    print(f"{'ours':<28}{ours_time:>14.2f}")
    if trl_steps:
        print(f"{'speed-up (TRL / ours)':<28}{trl_time / ours_time:>13.1f}x")

    prompt_tokens = statistics.mean(len(ids) for ids in ours.method.prompt_ids)
    completion_tokens = median("completion_tokens")
    flops = step_flops(ours.policy.model.config, prompt_tokens, completion_tokens)
    peak = max(rates.values())
    print(
        f"\nwhere our time goes (median of {len(ours_steps)} steps; floor = matmul FLOPs at the "
        f"best measured rate, {peak:.0f} GFLOP/s)"
    )
    print(f"{'phase':<12}{'seconds':>9}{'GFLOP':>8}{'floor s':>9}{'x floor':>9}")
    for phase in ("sampling", "grading", "training"):
        seconds = median(phase)
        gflop = flops.get(phase, 0.0) / 1e9
        floor = gflop / peak
        ratio = f"{seconds / floor:>9.1f}" if floor else f"{'-':>9}"
        print(f"{phase:<12}{seconds:>9.2f}{gflop:>8.0f}{floor:>9.2f}{ratio}")
    print(
        f"(prompt {prompt_tokens:.0f} tokens, completions {completion_tokens:.1f} tokens on average)"
    )


if __name__ == "__main__":
    sys.exit(main())
