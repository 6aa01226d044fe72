"""How much memory a training job needs on one device, from the model's shape and the job's
hyperparameters (no torch: the API decides with it before a job is queued).

The trainer keeps bf16 base weights on a GPU, and fp32 ones on a CPU (plus a bf16 copy where
the CPU computes in bf16), a LoRA
adapter with its gradients and two AdamW moments, and, at its peak, either the training
forward's saved activations or the sampling KV cache: sampling and training take turns, so
the larger of the two counts. A packed training sequence holds a prompt and all its group's
completions (worker/trainer/logprobs.py), and attention on a block mask keeps its
[heads, length, length] probabilities for the backward pass. Every completion is counted at
its full `max_completion_tokens`: an upper bound, as most stop earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.model_shape import ModelShape

GIB = 1024**3
# a prompt's length is not known before the files are read; the examples of this project's
# tasks run 40-120 tokens, so this leaves room
ASSUMED_PROMPT_TOKENS = 256
# the runtime itself: the interpreter, torch's kernels and allocator slack (a CUDA context is
# about this size too)
RUNTIME_BYTES = GIB // 2
# worker/trainer/logprobs.py: vocabulary logits are kept for the backward pass up to this size
KEPT_LOGITS_BYTES = 256 * 1024**2
LOGIT_CHUNK_ROWS = 256
# worker/trainer/grpo.py: prompt groups are packed into training forwards of at most this many
# tokens (one group at least); activations are held for one such micro-batch at a time
MAX_PACKED_TOKENS = 4096
# fp32 parameter, its gradient and AdamW's two moments
BYTES_PER_TRAINED_PARAMETER = 16


@dataclass(frozen=True)
class JobSize:
    """What of a job sets its memory: sequences per step and their lengths, the adapter."""

    batch_size: int  # prompts per step (DPO: pairs)
    group_size: int  # completions per prompt (1 for supervised, 2 for DPO's pair)
    completion_tokens: int
    lora_rank: int
    prompt_tokens: int = ASSUMED_PROMPT_TOKENS


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    adapter_and_optimizer: int
    training_activations: int
    sampling_cache: int
    runtime: int
    gradient_checkpointing: bool

    @property
    def total(self) -> int:
        peak = max(self.training_activations, self.sampling_cache)
        return self.weights + self.adapter_and_optimizer + peak + self.runtime

    def describe(self) -> str:
        """`4.1 GiB (weights 1.0 GiB, ...)`, for messages."""
        parts = (
            ("weights", self.weights),
            ("LoRA and optimizer state", self.adapter_and_optimizer),
            ("training activations", self.training_activations),
            ("sampling KV cache", self.sampling_cache),
            ("runtime", self.runtime),
        )
        shown = ", ".join(f"{name} {format_bytes(size)}" for name, size in parts)
        checkpointing = "; with gradient checkpointing" if self.gradient_checkpointing else ""
        return f"{format_bytes(self.total)} ({shown}{checkpointing})"


def format_bytes(size: int) -> str:
    if size >= GIB:
        return f"{size / GIB:.1f} GiB"
    return f"{size / 1024**2:.0f} MiB"


def estimate_memory(
    shape: ModelShape,
    size: JobSize,
    bf16: bool,
    gradient_checkpointing: bool = False,
    device_kind: str = "cpu",
) -> MemoryEstimate:
    """Peak bytes of one training run on a device that computes in bf16 or in fp32."""
    activation_bytes = 2 if bf16 else 4
    return MemoryEstimate(
        weights=shape.parameters * _bytes_per_weight(bf16, device_kind),
        adapter_and_optimizer=shape.lora_parameters(size.lora_rank) * BYTES_PER_TRAINED_PARAMETER,
        training_activations=_training_activations(
            shape, size, activation_bytes, gradient_checkpointing
        ),
        sampling_cache=_sampling_cache(shape, size, activation_bytes),
        runtime=RUNTIME_BYTES,
        gradient_checkpointing=gradient_checkpointing,
    )


def _bytes_per_weight(bf16: bool, device_kind: str) -> int:
    """The frozen base weights: loaded in bf16 on a GPU that computes in it; on a CPU in fp32,
    with a bf16 copy for decoding and the forward where the CPU computes in bf16."""
    if device_kind == "cuda" and bf16:
        return 2
    return 4 + (2 if bf16 else 0)


def _saved_per_token(shape: ModelShape, rank: int) -> int:
    """Values one block saves per token for its backward pass: the norms' inputs, the inputs
    and outputs of q, k, v and o, the gated MLP's three intermediates and the down projection's
    input, and each LoRA branch's rank-wide middle."""
    hidden, inner = shape.hidden_size, shape.intermediate_size
    q_width, kv_width = shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
    return 4 * hidden + 3 * q_width + 2 * kv_width + 4 * inner + 7 * rank


def _training_activations(
    shape: ModelShape, size: JobSize, activation_bytes: int, checkpointing: bool
) -> int:
    length = size.prompt_tokens + size.group_size * size.completion_tokens
    sequences = min(size.batch_size, max(1, MAX_PACKED_TOKENS // length))
    tokens = sequences * length
    per_block = tokens * _saved_per_token(shape, size.lora_rank) * activation_bytes
    # attention probabilities over the packed sequence (fp32 with the additive mask)
    per_block += sequences * shape.num_heads * length * length * 4
    if checkpointing:
        # each block's input is kept; one block at a time is recomputed in full
        kept = shape.num_layers * tokens * shape.hidden_size * activation_bytes
        blocks = kept + per_block
    else:
        blocks = shape.num_layers * per_block
    scored = sequences * size.group_size * size.completion_tokens
    logits = scored * shape.vocab_size * 4
    if logits > KEPT_LOGITS_BYTES:
        logits = 2 * LOGIT_CHUNK_ROWS * shape.vocab_size * 4
    return blocks + logits


def _sampling_cache(shape: ModelShape, size: JobSize, activation_bytes: int) -> int:
    """Keys and values of every sequence sampled at once, at full length, and one step's
    logits for each."""
    sequences = size.batch_size * size.group_size
    length = size.prompt_tokens + size.completion_tokens
    per_token = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * activation_bytes
    return sequences * length * per_token + sequences * shape.vocab_size * 4
