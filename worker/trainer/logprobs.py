"""Log-probabilities of given completions under the model, for training.

Packing: each prompt and the completions that continue it form one sequence
`[prompt | completion 1 | completion 2 | ...]` with a block attention mask (every completion
sees the prompt and its own earlier tokens), so the prompt is computed once per group and no
compute goes to padding after an end-of-turn token.

Vocabulary logits are computed only at positions that predict a completion token, a chunk of
rows at a time, inside one autograd function: the [tokens, 49k] logits never exist whole
(bounded memory), and the softmax passes stay in cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from worker.trainer.frozen_linear import FrozenLinear
from worker.trainer.models import Policy, soft_cap

# rows of logits computed at once (~50 MB for a 49k vocabulary)
LOGIT_CHUNK_ROWS = 256
# keep the chunk logits for the backward pass below this size, recompute them above it
KEEP_LOGITS_BYTES = 256 * 1024**2


@dataclass
class Packed:
    """Prompts and their completions packed one prompt per sequence (right-padded)."""

    input_ids: Tensor  # [S, L]
    position_ids: Tensor  # [S, L]
    attention_mask: Tensor  # [S, 1, L, L] bool, True where a query may attend to a key
    source: tuple[Tensor, Tensor]  # (sequence, position) of the hidden state predicting target k
    targets: Tensor  # [K] completion tokens
    rows: Tensor  # [K] completion row of each target
    columns: Tensor  # [K] position of each target in its completion
    prompt_lengths: Tensor  # [S] the prompt's length in each sequence
    # a vision model's sequences: the images of each one's prompt (pixel values, or None)
    images: list[Tensor | None] | None = None


def pack(
    prompts: list[list[int]],
    completions: list[tuple[int, int, list[int]]],
    pad_id: int,
    device: Any,
    images: list[Tensor | None] | None = None,
) -> Packed:
    """`completions` holds (row, prompt index, tokens); only prompts with completions are kept.
    `images`, for a vision model: per prompt, its images' pixel values or None."""
    by_prompt: dict[int, list[tuple[int, list[int]]]] = {}
    for row, prompt_index, tokens in completions:
        by_prompt.setdefault(prompt_index, []).append((row, tokens))
    sequences: list[list[int]] = []
    segments: list[list[int]] = []
    positions: list[list[int]] = []
    source_seq: list[int] = []
    source_pos: list[int] = []
    targets: list[int] = []
    rows: list[int] = []
    columns: list[int] = []
    kept: list[int] = []
    for s, (prompt_index, group) in enumerate(sorted(by_prompt.items())):
        prompt = prompts[prompt_index]
        ids, owner, position = list(prompt), [-1] * len(prompt), list(range(len(prompt)))
        for row, tokens in group:
            # the last prompt token predicts the first completion token; the last completion
            # token predicts nothing scored, so it is not fed
            predictors = [len(prompt) - 1] + list(range(len(ids), len(ids) + len(tokens) - 1))
            ids += tokens[:-1]
            owner += [row] * (len(tokens) - 1)
            position += range(len(prompt), len(prompt) + len(tokens) - 1)
            source_seq += [s] * len(tokens)
            source_pos += predictors
            targets += tokens
            rows += [row] * len(tokens)
            columns += range(len(tokens))
        sequences.append(ids)
        segments.append(owner)
        positions.append(position)
        kept.append(prompt_index)
    width = max(len(ids) for ids in sequences)

    def padded(lists: list[list[int]], fill: int) -> Tensor:
        return torch.tensor([x + [fill] * (width - len(x)) for x in lists], device=device)

    segment = padded(segments, -2)  # -1: prompt, -2: padding, else the completion's row
    index = torch.arange(width, device=device)
    causal = index[None, :] <= index[:, None]
    same = (segment[:, None, :] == -1) | (segment[:, None, :] == segment[:, :, None])
    real = segment != -2
    mask = causal[None] & same & real[:, None, :] & real[:, :, None]
    mask |= torch.eye(width, dtype=torch.bool, device=device)[None]  # padding sees itself
    tensor = torch.tensor
    return Packed(
        input_ids=padded(sequences, pad_id),
        position_ids=padded(positions, 0),
        attention_mask=mask[:, None],
        source=(tensor(source_seq, device=device), tensor(source_pos, device=device)),
        targets=tensor(targets, device=device),
        rows=tensor(rows, device=device),
        columns=tensor(columns, device=device),
        prompt_lengths=tensor([len(prompts[index]) for index in kept], device=device),
        images=[images[index] for index in kept] if images is not None else None,
    )


class TokenLogprobs(torch.autograd.Function):
    """log p(target), and optionally whether the target is the argmax, from hidden states and
    the output layer, a chunk of rows at a time. The output layer is frozen: only the hidden
    states get a gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        targets: Tensor,
        temperature: float,
        head: FrozenLinear,
        softcap: float | None,
        hits: bool,
    ) -> tuple[Tensor, Tensor]:
        # soft-capped logits are recomputed: the backward needs them, not only the softmax
        keep = softcap is None and hidden.shape[0] * head.weight.shape[0] * 4 <= KEEP_LOGITS_BYTES
        logprobs, hit, kept, lses = [], [], [], []
        # chunks not kept are written one after another into the same memory
        reused = None if keep else chunk_buffer(hidden, head, torch.float32)
        for start in range(0, hidden.shape[0], LOGIT_CHUNK_ROWS):
            chunk = slice(start, start + LOGIT_CHUNK_ROWS)
            logits = scaled_logits(head, hidden[chunk], temperature, softcap, out=reused)
            target = targets[chunk]
            if hits:
                hit.append(logits.argmax(-1) == target)
            target_logits = logits.gather(1, target[:, None]).squeeze(1)
            lse = softmax_(logits)  # logits now hold the probabilities
            logprobs.append(target_logits - lse)
            lses.append(lse)
            if keep:
                kept.append(logits)
        ctx.save_for_backward(hidden, targets, torch.cat(lses))
        ctx.kept, ctx.temperature, ctx.head, ctx.softcap = kept, temperature, head, softcap
        # the backward multiplies in the precision the forward did
        device = hidden.device.type
        ctx.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        ctx.weight = head.active_weight(device)
        return torch.cat(logprobs), torch.cat(hit) if hits else targets.new_zeros(0, dtype=bool)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_logprobs: Tensor, *unused: Any
    ) -> tuple[Tensor | None, None, None, None, None, None]:
        hidden, targets, lse = ctx.saved_tensors
        weight, softcap, temperature = ctx.weight, ctx.softcap, ctx.temperature
        grad_hidden = torch.empty_like(hidden)
        reused = None if ctx.kept else chunk_buffer(hidden, ctx.head, torch.float32)
        low = (
            None if weight.dtype == torch.float32 else chunk_buffer(hidden, ctx.head, weight.dtype)
        )
        for number, start in enumerate(range(0, hidden.shape[0], LOGIT_CHUNK_ROWS)):
            chunk = slice(start, start + LOGIT_CHUNK_ROWS)
            cap_slope = None
            if ctx.kept:
                probs = ctx.kept[number]
            else:
                device, dtype, enabled = ctx.autocast
                with torch.autocast(device, dtype=dtype, enabled=enabled):
                    logits = scaled_logits(
                        ctx.head, hidden[chunk], temperature, softcap, out=reused
                    )
                if softcap is not None:
                    # d/dz cap * tanh(z / cap) = 1 - tanh^2 = 1 - (capped / cap)^2
                    cap_slope = 1 - (logits * (temperature / softcap)).square_()
                probs = logits.sub_(lse[chunk, None]).exp_()
            # d log p(t) / d logits = onehot(t) - softmax
            grad = probs.mul_(-grad_logprobs[chunk, None])
            grad.scatter_add_(1, targets[chunk, None], grad_logprobs[chunk, None])
            if temperature != 1.0:
                grad /= temperature
            if cap_slope is not None:
                grad *= cap_slope
            if low is not None:
                grad = low[: len(grad)].copy_(grad)
            grad_hidden[chunk] = grad @ weight
        ctx.kept = ctx.weight = None
        return grad_hidden, None, None, None, None, None


def softmax_(logits: Tensor) -> Tensor:
    """Turn [rows, vocab] logits into probabilities in place; return the log-sum-exp per row.
    In place and in separate passes: on the CPU this is ~2.5x faster than logsumexp followed by
    a subtraction into a new tensor, which spends most of its time on fresh memory."""
    peak = logits.amax(-1)
    total = logits.sub_(peak[:, None]).exp_().sum(-1)
    logits.div_(total[:, None])
    return peak + total.log()


def scaled_logits(
    head: FrozenLinear,
    hidden: Tensor,
    temperature: float,
    softcap: float | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """fp32 logits of `hidden`'s rows, soft-capped and scaled; in the first rows of `out`
    where given."""
    logits = head(hidden)
    logits = logits.float() if out is None else out[: len(hidden)].copy_(logits)
    logits = soft_cap(logits, softcap)
    return logits.div_(temperature) if temperature != 1.0 else logits


def chunk_buffer(hidden: Tensor, head: FrozenLinear, dtype: torch.dtype) -> Tensor:
    """Memory for one chunk of logits rows, written afresh for each chunk: a new tensor per
    chunk costs its page faults each time (~70 ms for 256 rows of Gemma 3's 262k tokens in
    fp32), more than the softmax passes over it."""
    rows = min(LOGIT_CHUNK_ROWS, hidden.shape[0])
    return torch.empty((rows, head.weight.shape[0]), dtype=dtype, device=hidden.device)


@dataclass
class PackedScores:
    logprobs: Tensor  # [K] differentiable when grad is enabled
    argmax_hits: Tensor  # [K] bool; empty unless asked for


def score_packed(
    policy: Policy, packed: Packed, temperature: float = 1.0, hits: bool = False
) -> PackedScores:
    fused = policy.fused_model()
    embeds = None
    if packed.images is not None and any(pixels is not None for pixels in packed.images):
        embeds = policy.input_embeddings(packed.input_ids, packed.images, packed.prompt_lengths)
        fused = None  # the fused decoder reads token ids only
    if fused is not None:
        masks = decoder_masks(packed, policy.model.config, policy.autocast_dtype)
        hidden = fused.forward(packed.input_ids, masks, packed.position_ids)
    else:
        hidden = policy.decoder(
            input_ids=None if embeds is not None else packed.input_ids,
            inputs_embeds=embeds,
            attention_mask=decoder_masks(packed, policy.model.config, policy.autocast_dtype),
            position_ids=packed.position_ids,
            use_cache=False,
        ).last_hidden_state
    predicting = hidden[packed.source]
    logprobs, argmax_hits = TokenLogprobs.apply(
        predicting, packed.targets, temperature, policy.head, policy.logit_softcap, hits
    )
    return PackedScores(logprobs, argmax_hits)


def additive_mask(allowed: Tensor, dtype: torch.dtype | None) -> Tensor:
    """0 where attention is allowed, -inf elsewhere: the CPU attention kernel runs about a
    third faster with it than with a boolean mask."""
    mask = torch.zeros(allowed.shape, dtype=dtype or torch.float32, device=allowed.device)
    return mask.masked_fill_(~allowed, float("-inf"))


def decoder_masks(packed: Packed, config: Any, dtype: torch.dtype | None) -> Any:
    """The packed attention mask as the decoder's layers need it: one additive mask where
    every layer attends to the whole context; with a sliding window, a mask that also hides
    keys `sliding_window` or more positions back, for every layer (Mistral, Phi-3) or, by
    layer type, for the sliding layers only (Gemma 2/3, Qwen2 with sliding layers)."""
    text_config = config.get_text_config(decoder=True)
    window = getattr(text_config, "sliding_window", None)
    full = additive_mask(packed.attention_mask, dtype)
    if window is None:
        return full
    # position ids count the original sequence, so within a prompt and one of its
    # completions their difference is the distance the unpacked sequence would have
    positions = packed.position_ids
    near = (positions[:, :, None] - positions[:, None, :]) < window  # [S, query, key]
    sliding = additive_mask(packed.attention_mask & near[:, None], dtype)
    layer_types = getattr(text_config, "layer_types", None)
    if layer_types is None:
        return sliding
    return {"full_attention": full, "sliding_attention": sliding}


def as_matrix(values: Tensor, packed: Packed, shape: tuple[int, int]) -> Tensor:
    """Per-target values laid out as [rows, completion positions] (zeros elsewhere)."""
    matrix = values.new_zeros(shape)
    return matrix.index_put((packed.rows, packed.columns), values)
