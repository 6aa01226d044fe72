"""GRPO step time: our trainer against TRL's GRPOTrainer, like with like, in one run.

Reference configuration: SmolLM2-135M-Instruct, LoRA r=16 alpha=32 on all linear layers,
4 prompts x 8 completions per step, 24 completion tokens, beta 0, one update per batch, the same
learning rate, ROUGE-1 against the reference answer as the reward. Three sides:

- ours: our trainer's step on the device and precision it picks itself (`pick_device`,
  `pick_autocast_dtype`): CUDA when present; bf16 autocast where the hardware runs bf16
  natively, else fp32. No gradient checkpointing.
- TRL tuned: TRL at its best on this machine: the same device as ours, bf16 autocast exactly
  where ours uses it, gradient checkpointing off (it only saves memory, which a 135M model does
  not need).
- TRL shipped: GRPOConfig's defaults (gradient checkpointing on, bf16 autocast) except for the
  reference configuration above and, on a machine without CUDA, `use_cpu=True`, without which
  it refuses to start. On a CPU without native bf16 its default bf16 is emulated, and slow.

Every side gets the same prompts in the same order and the same token ids: each prompt is
rendered once with the model's chat template the way our trainer renders it (`developer` as
`system`, so the template adds no default system prompt of its own) and TRL is given that text.
The run stops if any prompt's token ids differ between the sides. A ratio is printed only
between sides that ran on the same device.

The sides alternate in blocks (TRL tuned, TRL shipped, ours, then again) so that load from other
processes hits all alike. Each block starts from the base model with a fresh adapter
(completions shorten as a run learns, so later steps would flatter whichever ran longer); the
first step of each block is a warm-up and is not counted.

`--schema` also times our step with a json_schema response_format (ANSWER_FORMAT: every
completion is constrained token by token, worker/constrained) on the same prompts, in the same
blocks, and reports the overhead: step time, sampling time and sampling time per decoding
position (the decode loop runs as many positions as the step's longest completion), since
constrained completions differ in length from free ones.

On a 2-core CPU without native bf16 a TRL shipped step takes about 8 minutes (emulated bf16
matmuls run ~8x slower than fp32), against well under a minute for the others: `--quick` (one
round of one timed step) then takes about 20 minutes, and `--sides ours,tuned` about 3.

`--model` takes model directories or catalogue names, comma-separated (default
SmolLM2-135M-Instruct and gemma-3-270m); each is run in turn and a last table puts them side
by side, with each step against its floors. On a CUDA machine with vLLM installed (the `gpu`
extra), `--trl-vllm` gives TRL's sides vLLM generation colocated with training (`use_vllm`,
`vllm_mode="colocate"`); scripts/gpu_check.sh runs it so with a 0.5B model.

    .venv/bin/pip install -e ".[bench]"   # TRL, benchmark-only
    .venv/bin/python bench/trainer.py [--quick] [--rounds 2] [--steps 3] [--sides ours,tuned]
                                        [--threads N] [--model A,B] [--trl-vllm]
                                        [--schema]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoConfig  # noqa: E402

from app.base_models import GEMMA3_NAME, SMOLLM2_NAME  # noqa: E402
from app.graders import BatchGrader, GraderConfig, make_sample  # noqa: E402
from app.jobs.hyperparameters import Hyperparameters, resolve_hyperparameters  # noqa: E402
from app.settings import get_settings  # noqa: E402
from bench.tasks import ROUGE_GRADER, capital_rows  # noqa: E402
from worker.constrained import Constraint  # noqa: E402
from worker.trainer.data import DataOrder, encode_prompt, prompt_messages  # noqa: E402
from worker.trainer.frozen_linear import FrozenLinear  # noqa: E402
from worker.trainer.fused_decoder import base_weight  # noqa: E402
from worker.trainer.methods import Reinforcement  # noqa: E402
from worker.trainer.models import (  # noqa: E402
    load_policy,
    load_tokenizer,
    pick_autocast_dtype,
    pick_device,
    resolve_model_dir,
)

MODEL = SMOLLM2_NAME
PROMPTS, GROUP, TOKENS, RANK = 4, 8, 24, 16
SEED = 0
SIDES = {"ours": "ours", "tuned": "TRL tuned", "shipped": "TRL shipped"}
SCHEMA_SIDE = "ours+schema"
# the task's answer as one JSON field (--schema)
ANSWER_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "capital",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
            "additionalProperties": False,
        },
    },
}


def reference_hyperparameters() -> Hyperparameters:
    overrides = {
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
    return resolve_hyperparameters("reinforcement", overrides, len(capital_rows()), 1)


def precision_name(autocast_dtype: Any) -> str:
    return "bf16 autocast" if autocast_dtype == torch.bfloat16 else "fp32"


@dataclass
class Side:
    """One side's settings and what its timed steps measured."""

    name: str
    device: str  # torch.device type the side ran on: "cpu" or "cuda"
    precision: str
    gradient_checkpointing: bool
    step_seconds: list[float] = field(default_factory=list)
    completion_lengths: list[float] = field(default_factory=list)  # mean per step, EOS counted
    longest_completions: list[float] = field(default_factory=list)  # max per step
    prompt_tokens: list[int] = field(default_factory=list)  # per prompt sampled

    def median_step(self) -> float:
        return statistics.median(self.step_seconds)


class Ours:
    """Our trainer's step, exactly as `train()` runs it (the Reinforcement method object)."""

    def __init__(
        self,
        model_dir: Path,
        rows: list[dict],
        grader: BatchGrader,
        device: str,
        constraint: Constraint | None = None,
    ) -> None:
        hp = reference_hyperparameters()
        torch.manual_seed(SEED)
        self.policy = load_policy(model_dir, hp.lora_rank, hp.lora_alpha, device, "auto")
        # TRL's completions end at end-of-sequence only: so do ours, where a plain-template
        # model (gemma-3-270m) would also end them at its next turn
        self.policy.turn_stops = ()
        optimizer = torch.optim.AdamW(
            self.policy.trainable_parameters(), lr=hp.learning_rate, weight_decay=0.0
        )
        self.method = Reinforcement(
            self.policy, optimizer, grader, rows, rows[:1], hp, SEED, constraint=constraint
        )
        self.step = 0

    def run(self, steps: int, side: Side) -> list[dict[str, float]]:
        """Warm-up step plus `steps` timed ones; returns the timed steps' phase timings."""
        timings = []
        for block_step in range(steps + 1):
            self.step += 1
            started = time.perf_counter()
            report = self.method.train_step(self.step)
            seconds = time.perf_counter() - started
            if block_step == 0:
                continue
            max_length = report.data["trl"]["completions/max_length"]
            timings.append(report.timing | {"total": seconds, "decode_steps": max_length})
            side.step_seconds.append(seconds)
            side.completion_lengths.append(report.data["trl"]["completions/mean_length"])
            side.longest_completions.append(report.data["trl"]["completions/max_length"])
            indices = self.method.order.indices(self.step - 1)
            side.prompt_tokens += [len(self.method.prompt_ids[i]) for i in indices]
        return timings


class TRL:
    """TRL's GRPOTrainer on the same model, prompts and reward; step time from a callback.

    `config` holds what this side sets beyond the reference configuration."""

    def __init__(
        self,
        model_dir: Path,
        rows: list[dict],
        prompt_texts: list[str],
        grader: BatchGrader,
        config: dict[str, Any],
    ) -> None:
        from transformers import TrainerCallback
        from trl import GRPOTrainer

        self.model_dir = model_dir
        self.rows = rows
        self.prompt_texts = prompt_texts
        self.config = config
        self.step_times: list[float] = []
        self.generations: list[tuple[list[str], list[list[int]], list[list[int]]]] = []
        times, generations = self.step_times, self.generations

        class StepTimer(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                self.started = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                times.append(time.perf_counter() - self.started)

        class RecordingGRPOTrainer(GRPOTrainer):
            """Keeps the prompt and completion token ids TRL actually generated from."""

            def _generate(self, prompts: list) -> Any:
                output = super()._generate(prompts)
                prompt_ids, completion_ids = output[0], output[1]
                generations.append((list(prompts), list(prompt_ids), list(completion_ids)))
                return output

        def reward(completions: list, answer: list[str], **kwargs: Any) -> list[float]:
            # plain-text prompts give plain-text completions
            samples = [make_sample(text) for text in completions]
            return grader.grade(samples, [{"answer": a} for a in answer]).rewards

        self.trainer_class = RecordingGRPOTrainer
        self.callbacks = [StepTimer()]
        self.reward = reward

    def make(self, steps: int, order: DataOrder) -> Any:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import GRPOConfig

        # our step order, prompt by prompt; TRL must not reshuffle it
        visited = [i for step in range(steps) for i in order.indices(step)]
        dataset = Dataset.from_list(
            [{"prompt": self.prompt_texts[i], "answer": self.rows[i]["answer"]} for i in visited]
        )
        hp = reference_hyperparameters()
        args = GRPOConfig(
            output_dir=str(Path(os.environ.get("TMPDIR", "/tmp")) / "trl-bench"),
            per_device_train_batch_size=PROMPTS * GROUP,
            num_generations=GROUP,
            max_completion_length=TOKENS,
            beta=0.0,
            learning_rate=hp.learning_rate,
            max_steps=steps,
            shuffle_dataset=False,
            save_strategy="no",
            report_to="none",
            seed=SEED,
            disable_tqdm=True,
            **self.config,
        )
        return self.trainer_class(
            model=AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.float32),
            reward_funcs=self.reward,
            args=args,
            train_dataset=dataset,
            processing_class=AutoTokenizer.from_pretrained(self.model_dir),
            peft_config=LoraConfig(
                r=RANK, lora_alpha=2 * RANK, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
            callbacks=self.callbacks,
        )

    def run(
        self, steps: int, order: DataOrder, side: Side, our_prompt_ids: list[list[int]]
    ) -> None:
        """Warm-up step plus `steps` timed ones; fails if TRL tokenised a prompt differently."""
        self.step_times.clear()
        self.generations.clear()
        trainer = self.make(steps + 1, order)
        side.device = trainer.accelerator.device.type
        trainer.train()
        check_same_prompt_ids(side.name, self.prompt_texts, our_prompt_ids, self.generations)
        side.step_seconds += self.step_times[1:]
        for _, prompt_ids, completion_ids in self.generations[1:]:
            side.completion_lengths.append(statistics.mean(len(ids) for ids in completion_ids))
            side.prompt_tokens += [len(ids) for ids in prompt_ids[::GROUP]]


def check_same_prompt_ids(
    name: str,
    prompt_texts: list[str],
    our_prompt_ids: list[list[int]],
    generations: list[tuple[list[str], list[list[int]], list[list[int]]]],
) -> None:
    index = {text: i for i, text in enumerate(prompt_texts)}
    for prompts, prompt_ids, _ in generations:
        for text, ids in zip(prompts, prompt_ids, strict=True):
            ours = our_prompt_ids[index[text]]
            if list(ids) != ours:
                raise SystemExit(
                    f"{name} was given different prompt tokens than ours for prompt "
                    f"{index[text]}: {len(ids)} tokens against our {len(ours)}; the comparison "
                    "would not be like with like"
                )


def render_prompts(model_dir: Path, rows: list[dict]) -> list[str]:
    """Each prompt as text, rendered by the chat template as our trainer renders it
    (data.encode_prompt tokenises the same call), for TRL to tokenise. TRL's tokenising adds
    the tokenizer's special tokens: where the template already wrote the BOS token (Gemma's
    does), it is left out of the text, so that both sides see one BOS."""
    tokenizer = load_tokenizer(model_dir)
    texts = []
    for row in rows:
        text = tokenizer.apply_chat_template(
            prompt_messages(row), add_generation_prompt=True, tokenize=False
        )
        ours = encode_prompt(tokenizer, row)
        bos = tokenizer.bos_token or ""
        if bos and text.startswith(bos) and tokenizer(text)["input_ids"] != ours:
            text = text.removeprefix(bos)
        texts.append(text)
    return texts


def matmul_rate(
    rows: int, device: str, dtype: Any, inner: int, outer: int, repeats: int = 20
) -> float:
    """GFLOP/s of x @ W.T at the model's shapes (rows = tokens in flight, inner = hidden size,
    outer = MLP width), in our precision."""
    x = torch.randn(rows, inner, device=device, dtype=dtype)
    w = torch.randn(outer, inner, device=device, dtype=dtype)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(3):
        torch.nn.functional.linear(x, w)
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(x, w)
    sync()
    return 2 * rows * inner * outer * repeats / (time.perf_counter() - started) / 1e9


def decode_step_seconds(policy: Any, rows: int = PROMPTS * GROUP, repeats: int = 3) -> float:
    """The shortest time of one decoding step's multiplies by the frozen weights, every layer's
    projections and the output layer, for `rows` rows: the floor of a decoding step at these
    shapes, where each step streams every weight from memory for a few rows (bandwidth-bound,
    unlike the cached 2-matrix rate above). The fused decoder's stacked weights where the
    architecture has that form; else each adapted linear layer's base weight, kept in the
    autocast dtype as the fused form keeps it."""
    fused = policy.fused_model()
    if fused is not None:
        linears = [part.base for layer in fused.layers for part in layer.projections()]
    else:
        adapted = [m for m in policy.model.modules() if hasattr(m, "base_layer")]
        linears = [FrozenLinear(base_weight(m), policy.autocast_dtype) for m in adapted]
    linears.append(policy.head)
    inputs = {
        width: torch.randn(rows, width, device=policy.device)
        for width in {linear.weight.shape[1] for linear in linears}
    }
    best = float("inf")
    with torch.no_grad(), policy.autocast():
        for _ in range(repeats):
            started = time.perf_counter()
            for linear in linears:
                linear(inputs[linear.weight.shape[1]])
            if policy.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
    return best


def step_flops(config: Any, prompt_tokens: float, completion_tokens: float) -> dict[str, float]:
    """Matmul FLOPs of one of our steps (LoRA terms left out): sampling = prompt prefill (once
    per prompt) plus one decode position per completion token, with a logits row each;
    training = the packed forward (each prompt once, its completions after it, logits only
    where a completion token is predicted) and the gradient with respect to its activations,
    which costs as much again."""
    config = config.get_text_config(decoder=True)
    hidden, layers = config.hidden_size, config.num_hidden_layers
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
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
    parser.add_argument("--quick", action="store_true", help="one round of one timed step")
    parser.add_argument(
        "--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--model",
        default=f"{MODEL},{GEMMA3_NAME}",
        help="model directories or catalogue names, comma-separated; each is benched in turn "
        "and a last table puts them side by side",
    )
    parser.add_argument(
        "--trl-vllm", action="store_true", help="TRL generates with vLLM, colocated (CUDA)"
    )
    parser.add_argument(
        "--schema",
        action="store_true",
        help="also time our step with a json_schema response_format and report the overhead",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 1, 1
    chosen = args.sides.split(",")
    if "ours" not in chosen or not set(chosen) <= set(SIDES):
        parser.error(f"--sides must include ours and name only {', '.join(SIDES)}")
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = get_settings()
    summaries = [
        bench_model(name, args, chosen, settings) for name in args.model.split(",") if name
    ]
    if len(summaries) > 1:
        report_models(summaries)
    return 0


@dataclass
class ModelSummary:
    """One model's line of the closing table."""

    model: str
    ours: Side
    trl: list[Side]
    step_x_floor: float
    sampling_x_decode_floor: float
    step_x_own_floor: float  # training's matmul floor + sampling's decoding floor


def bench_model(
    name: str, args: argparse.Namespace, chosen: list[str], settings: Any
) -> ModelSummary:
    """Every chosen side on one model, in alternating blocks; its tables; its summary line."""
    model_dir = resolve_model_dir(name, settings.model_dirs, settings.model_cache_dir)
    rows = capital_rows()
    prompt_texts = render_prompts(model_dir, rows)
    # the device and precision our trainer picks for itself (TrainSpec device None, "auto")
    device = pick_device()
    autocast_dtype = pick_autocast_dtype(device, "auto")
    print(f"torch threads {torch.get_num_threads()}, model {model_dir}")
    matmul_dtype = autocast_dtype or torch.float32
    text_config = AutoConfig.from_pretrained(model_dir).get_text_config(decoder=True)
    shape = (text_config.hidden_size, text_config.intermediate_size)
    rates = {
        "decode (32 rows)": matmul_rate(32, device, matmul_dtype, *shape),
        "batched (768 rows)": matmul_rate(768, device, matmul_dtype, *shape),
    }

    # TRL's settings beyond the reference configuration; where a side leaves one out,
    # GRPOConfig's default holds: bf16 autocast and gradient checkpointing on
    trl_configs: dict[str, dict[str, Any]] = {
        "tuned": {
            "use_cpu": device == "cpu",
            "bf16": autocast_dtype == torch.bfloat16,
            "gradient_checkpointing": False,
        },
        # without CUDA, TrainingArguments refuses TRL's default bf16 unless told use_cpu
        "shipped": {} if torch.cuda.is_available() else {"use_cpu": True},
    }
    if args.trl_vllm:
        for config in trl_configs.values():
            config |= {"use_vllm": True, "vllm_mode": "colocate"}
    sides = {"ours": Side("ours", device, precision_name(autocast_dtype), False)}
    for key in ("tuned", "shipped"):
        if key in chosen:
            config = trl_configs[key]
            precision = "bf16 autocast" if config.get("bf16", True) else "fp32"
            # the device is TRL's own choice, read when it starts
            sides[key] = Side(SIDES[key], "", precision, config.get("gradient_checkpointing", True))
    print(f"our trainer picks {device}, {sides['ours'].precision}")
    constraint = Constraint.from_response_format(ANSWER_FORMAT) if args.schema else None
    schema_side = Side(SCHEMA_SIDE, device, sides["ours"].precision, False)

    ours_timings: list[dict[str, float]] = []
    schema_timings: list[dict[str, float]] = []
    with BatchGrader(ROUGE_GRADER, GraderConfig.from_settings(settings)) as grader:
        trls = {
            key: TRL(model_dir, rows, prompt_texts, grader, trl_configs[key])
            for key in sides
            if key != "ours"
        }
        for round_number in range(args.rounds):
            ours = Ours(model_dir, rows, grader, device)
            for key, trl in trls.items():
                before = len(sides[key].step_seconds)
                trl.run(args.steps, ours.method.order, sides[key], ours.method.prompt_ids)
                print_block(round_number, sides[key], before)
            before = len(sides["ours"].step_seconds)
            ours_timings += ours.run(args.steps, sides["ours"])
            print_block(round_number, sides["ours"], before)
            if constraint is not None:
                before = len(schema_side.step_seconds)
                constrained = Ours(model_dir, rows, grader, device, constraint)
                schema_timings += constrained.run(args.steps, schema_side)
                print_block(round_number, schema_side, before)
    rates["decode after"] = matmul_rate(32, device, matmul_dtype, *shape)
    rates["batched after"] = matmul_rate(768, device, matmul_dtype, *shape)
    report(list(sides.values()))
    step_x_floor, sampling_x_floor, step_x_own_floor = report_phases(
        ours, sides["ours"], ours_timings, rates, precision_name(autocast_dtype)
    )
    if constraint is not None:
        report_schema_overhead(sides["ours"], ours_timings, schema_side, schema_timings)
    trl_sides = [side for key, side in sides.items() if key != "ours"]
    return ModelSummary(
        name, sides["ours"], trl_sides, step_x_floor, sampling_x_floor, step_x_own_floor
    )


def print_block(round_number: int, side: Side, before: int) -> None:
    block = " ".join(f"{seconds:.2f}" for seconds in side.step_seconds[before:])
    print(f"round {round_number + 1} {side.name:<12} steps: {block}", flush=True)


def report(sides: list[Side]) -> None:
    print(
        f"\n{'':<12}{'device':>7}{'precision':>15}{'grad ckpt':>11}{'prompt tok':>12}"
        f"{'completion tok':>16}{'s/step':>9}"
    )
    for side in sides:
        print(
            f"{side.name:<12}{side.device:>7}{side.precision:>15}"
            f"{'yes' if side.gradient_checkpointing else 'no':>11}"
            f"{statistics.mean(side.prompt_tokens):>12.1f}"
            f"{statistics.mean(side.completion_lengths):>16.1f}{side.median_step():>9.2f}"
        )
    print("(prompt and completion tokens: means over the timed steps, EOS counted; s/step: median)")
    print("prompt tokens of each prompt sampled in the timed steps (token ids checked equal):")
    for side in sides:
        print(f"  {side.name:<12}" + " ".join(str(count) for count in side.prompt_tokens))
    ours = sides[0]
    for side in sides[1:]:
        label = f"ours vs {side.name}:"
        if side.device != ours.device:
            print(f"{label} no ratio: TRL ran on {side.device}, ours on {ours.device}")
            continue
        ratio = side.median_step() / ours.median_step()
        note = ""
        if side.precision != ours.precision:
            note = f"; TRL ran {side.precision}, ours {ours.precision}"
            if side.device == "cpu" and side.precision.startswith("bf16"):
                note += " (this CPU has no native bf16: TRL's bf16 is emulated)"
        print(f"{label} {ratio:.1f}x (TRL's step time / ours{note})")


def report_phases(
    ours: Ours,
    side: Side,
    timings: list[dict[str, float]],
    rates: dict[str, float],
    precision: str,
) -> tuple[float, float, float]:
    """Prints where our step's time goes; returns the step's and sampling's ratios to their
    floors (matmul FLOPs at the best rate; decoding steps x one decoding step's multiplies),
    and the step's ratio to its own floor: training's matmul floor plus sampling's decoding
    floor (decoding streams every weight for a few rows, so the matmul rate is out of its
    reach)."""

    def median(key: str) -> float:
        return statistics.median(step[key] for step in timings)

    prompt_tokens = statistics.mean(side.prompt_tokens)
    completion_tokens = statistics.mean(side.completion_lengths)
    flops = step_flops(ours.policy.model.config, prompt_tokens, completion_tokens)
    peak = max(rates.values())
    print(
        f"\nmatmul rate ({precision}, GFLOP/s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
    )
    print(
        f"where our time goes (median of {len(timings)} steps; floor = matmul FLOPs at the "
        f"best measured rate, {peak:.0f} GFLOP/s)"
    )
    print(f"{'phase':<12}{'seconds':>9}{'GFLOP':>8}{'floor s':>9}{'x floor':>9}")
    flops["total"] = flops["sampling"] + flops["training"]
    for phase in ("sampling", "grading", "training", "total"):
        seconds = median(phase)
        gflop = flops.get(phase, 0.0) / 1e9
        floor = gflop / peak
        ratio = f"{seconds / floor:>9.1f}" if floor else f"{'-':>9}"
        print(f"{phase:<12}{seconds:>9.2f}{gflop:>8.0f}{floor:>9.2f}{ratio}")
    step_seconds = decode_step_seconds(ours.policy)
    decode_steps = median("decode_steps")
    decode_floor = decode_steps * step_seconds
    print(
        f"sampling against its decoding floor: {decode_steps:.0f} decoding steps (the longest "
        f"completion) x {step_seconds * 1000:.0f} ms (one step's multiplies by every weight, "
        f"{PROMPTS * GROUP} rows) = {decode_floor:.2f} s; sampling is "
        f"{median('sampling') / decode_floor:.1f}x that"
    )
    own_floor = flops["training"] / 1e9 / peak + decode_floor
    print(
        f"the step against its own floor (training's matmul floor + sampling's decoding "
        f"floor) = {own_floor:.2f} s: the step is {median('total') / own_floor:.1f}x that"
    )
    total_floor = flops["total"] / 1e9 / peak
    return (
        median("total") / total_floor,
        median("sampling") / decode_floor,
        median("total") / own_floor,
    )


def report_models(summaries: list[ModelSummary]) -> None:
    """All models of the run in one table: our step against TRL's and against the floors."""
    names = [side.name for side in summaries[0].trl]
    print("\nall models (median s/step; ratio = TRL's step time / ours, same device)")
    header = f"{'model':<24}{'ours s':>8}" + "".join(f"{n + ' s':>14}{'ratio':>7}" for n in names)
    print(header + f"{'step x floor':>14}{'sampling x decode floor':>25}{'step x own floor':>18}")
    for summary in summaries:
        line = f"{summary.model:<24}{summary.ours.median_step():>8.2f}"
        for side in summary.trl:
            same = side.device == summary.ours.device
            ratio = (
                f"{side.median_step() / summary.ours.median_step():>7.1f}" if same else f"{'-':>7}"
            )
            line += f"{side.median_step():>14.2f}{ratio}"
        line += f"{summary.step_x_floor:>14.1f}{summary.sampling_x_decode_floor:>25.1f}"
        line += f"{summary.step_x_own_floor:>18.1f}"
        print(line)


def report_schema_overhead(
    free: Side,
    free_timings: list[dict[str, float]],
    constrained: Side,
    constrained_timings: list[dict[str, float]],
) -> None:
    """Step and sampling time of our step with the schema against without (medians)."""
    print(f"\nresponse_format json_schema ({len(constrained_timings)} steps each, medians)")
    print(
        f"{'':<14}{'s/step':>9}{'sampling s':>12}{'longest':>9}{'ms/position':>13}"
        f"{'completion tok':>16}"
    )
    per_position = {}
    for side, timings in ((free, free_timings), (constrained, constrained_timings)):
        sampling = statistics.median(step["sampling"] for step in timings)
        longest = statistics.median(side.longest_completions)
        per_position[side.name] = sampling / longest * 1000
        print(
            f"{side.name:<14}{side.median_step():>9.2f}{sampling:>12.2f}{longest:>9.0f}"
            f"{per_position[side.name]:>13.1f}{statistics.mean(side.completion_lengths):>16.1f}"
        )
    step_ratio = constrained.median_step() / free.median_step()
    position_ratio = per_position[constrained.name] / per_position[free.name]
    print(
        f"overhead: step time x{step_ratio:.2f}, sampling time per decoding position "
        f"x{position_ratio:.2f} (the mask's own cost; lengths differ with the format)"
    )


if __name__ == "__main__":
    sys.exit(main())
