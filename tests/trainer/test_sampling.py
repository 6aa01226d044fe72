"""Sampling on the tiny model: end-of-turn masking, padding, determinism, and the identity
between log-probs recorded while sampling and those of a separate batched forward."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from worker.trainer import logprobs as logprobs_module
from worker.trainer.data import encode_prompt
from worker.trainer.logprobs import additive_mask, as_matrix, pack, score_packed
from worker.trainer.sampling import PromptBatch, decoding, sample, top_p_filter

from .conftest import question_rows


def prompts_of(policy: Any, texts: list[str]) -> PromptBatch:
    rows = [{"messages": [{"role": "user", "content": text}]} for text in texts]
    ids = [encode_prompt(policy.tokenizer, row) for row in rows]
    return PromptBatch.from_ids(ids, policy.pad_id, policy.device)


def draw(
    policy: Any, prompts: PromptBatch, seed: int, eos_ids: torch.Tensor | None = None, **kw: Any
) -> Any:
    generator = torch.Generator().manual_seed(seed)
    options = {"group_size": 4, "max_tokens": 6, "temperature": 1.0, "top_p": 1.0} | kw
    return sample(policy, prompts, generator=generator, eos_ids=eos_ids, **options)


def test_tokens_after_end_of_turn_are_padding_and_masked(tiny_policy: Any) -> None:
    prompts = prompts_of(tiny_policy, ["Hello there", "A longer question, with more words in it?"])
    # treat half of the vocabulary as end-of-turn so completions end at different lengths
    eos_ids = torch.arange(0, tiny_policy.model.config.vocab_size, 2)
    rollout = draw(tiny_policy, prompts, seed=3, eos_ids=eos_ids, max_tokens=8)
    lengths = rollout.completion_mask.sum(1).tolist()
    assert len(set(lengths)) > 1, "the test needs completions of several lengths"
    for ids, mask, ended in zip(
        rollout.completion_ids.tolist(),
        rollout.completion_mask.tolist(),
        rollout.ended.tolist(),
        strict=True,
    ):
        length = int(sum(mask))
        assert mask == [1.0] * length + [0.0] * (len(mask) - length)
        assert all(token == tiny_policy.pad_id for token in ids[length:])
        if ended:  # the end-of-turn token itself is kept and scored
            assert ids[length - 1] % 2 == 0
        assert all(token % 2 == 1 for token in ids[: length - 1])


def test_same_seed_same_completions(tiny_policy: Any) -> None:
    prompts = prompts_of(tiny_policy, ["One", "Two"])
    first = draw(tiny_policy, prompts, seed=7)
    again = draw(tiny_policy, prompts, seed=7)
    other = draw(tiny_policy, prompts, seed=8)
    assert torch.equal(first.completion_ids, again.completion_ids)
    assert not torch.equal(first.completion_ids, other.completion_ids)


def naive_logprobs(model: Any, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """log p(completion | prompt) from one plain forward over the whole sequence."""
    ids = torch.tensor([prompt + completion])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(completion)[:, None])[:, 0]


def packed_rows(rollout: Any, group_size: int) -> list[tuple[int, int, list[int]]]:
    return [(row, row // group_size, tokens) for row, tokens in enumerate(rollout.completions())]


def test_sampling_logprobs_equal_a_packed_forward(tiny_policy: Any) -> None:
    # prompts of different lengths: left padding and position ids must not change the numbers
    prompts = prompts_of(tiny_policy, ["Hi", "What is the capital city of France, please?"])
    rollout = draw(tiny_policy, prompts, seed=1, temperature=0.7)
    packed = pack(prompts.token_lists(), packed_rows(rollout, 4), tiny_policy.pad_id, "cpu")
    with torch.no_grad():
        scores = score_packed(tiny_policy, packed, temperature=0.7)
        hidden = tiny_policy.decoder(
            input_ids=packed.input_ids,
            attention_mask=additive_mask(packed.attention_mask, None),
            position_ids=packed.position_ids,
        ).last_hidden_state
        full = torch.log_softmax(tiny_policy.head(hidden[packed.source]) / 0.7, dim=-1)
    shape = tuple(rollout.completion_mask.shape)
    mask = rollout.completion_mask.bool()
    packed_logprobs = as_matrix(scores.logprobs, packed, shape)
    packed_entropies = as_matrix(-(full.exp() * full).sum(-1), packed, shape)
    assert torch.allclose(rollout.logprobs[mask], packed_logprobs[mask], atol=1e-4)
    assert torch.allclose(rollout.entropies[mask], packed_entropies[mask], atol=1e-3)


@pytest.mark.parametrize(("keep_logits", "fused"), [(True, True), (False, True), (True, False)])
def test_packed_gradients_equal_one_forward_per_completion(
    tiny_policy: Any, keep_logits: bool, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not keep_logits:
        monkeypatch.setattr(logprobs_module, "KEEP_LOGITS_BYTES", 0)
    if not fused:  # the model's own forward, as for architectures other than Llama
        monkeypatch.setattr(tiny_policy, "fused_model", lambda: None)
    assert (tiny_policy.fused_model() is not None) == fused
    with torch.no_grad():  # a trained-looking adapter: B is zero at initialisation
        for name, parameter in tiny_policy.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    monkeypatch.setattr(logprobs_module, "LOGIT_CHUNK_ROWS", 5)  # several chunks
    prompts = prompts_of(tiny_policy, ["Hi", "Tell me something longer"])
    rollout = draw(tiny_policy, prompts, seed=2)
    rows = packed_rows(rollout, 4)
    weights = torch.linspace(-1, 1, len(rows))
    packed = pack(prompts.token_lists(), rows, tiny_policy.pad_id, "cpu")
    scores = score_packed(tiny_policy, packed)
    (weights[packed.rows] * scores.logprobs).sum().backward()
    via_packing = [p.grad.clone() for p in tiny_policy.trainable_parameters()]
    tiny_policy.model.zero_grad()
    prompt_ids = prompts.token_lists()
    total = sum(
        weight * naive_logprobs(tiny_policy.model, prompt_ids[p], tokens).sum()
        for weight, (_, p, tokens) in zip(weights, rows, strict=True)
    )
    total.backward()
    direct = [p.grad for p in tiny_policy.trainable_parameters()]
    assert any(g.abs().sum() > 0 for g in via_packing)
    for a, b in zip(via_packing, direct, strict=True):
        # equal up to float rounding, judged against each tensor's scale: summation order
        # differs between the two (and between CPUs), and elements near zero lose all digits
        assert (a - b).abs().max() <= 1e-4 * b.abs().max() + 1e-7


def test_packing_leaves_out_prompts_without_rows(tiny_policy: Any) -> None:
    pad = tiny_policy.pad_id
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    packed = pack(prompts, [(0, 0, [10, 11, 2]), (5, 2, [2])], pad, "cpu")
    # the last completion token is a target only; prompt 1 has no rows and is left out
    assert packed.input_ids.tolist() == [[1, 2, 3, 10, 11], [6, 7, 8, 9, pad]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 0]]
    assert packed.targets.tolist() == [10, 11, 2, 2]
    assert packed.rows.tolist() == [0, 0, 0, 5]
    assert packed.source[0].tolist() == [0, 0, 0, 1]
    assert packed.source[1].tolist() == [2, 3, 4, 3]
    # a completion token sees the prompt and its own earlier tokens; padding sees only itself
    assert packed.attention_mask[0, 0, 3].tolist() == [True] * 4 + [False]
    assert packed.attention_mask[1, 0, 4].tolist() == [False] * 4 + [True]


def test_rows_are_prompt_major(tiny_policy: Any) -> None:
    rows = question_rows(3)
    ids = [encode_prompt(tiny_policy.tokenizer, row) for row in rows]
    prompts = PromptBatch.from_ids(ids, tiny_policy.pad_id, tiny_policy.device)
    rollout = draw(tiny_policy, prompts, seed=0, group_size=2, max_tokens=3)
    with torch.no_grad():  # row 2 continues prompt 1
        direct = naive_logprobs(tiny_policy.model, ids[1], rollout.completions()[2])
    assert torch.allclose(rollout.logprobs[2][: len(direct)], direct, atol=1e-4)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logprobs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = top_p_filter(logprobs, 0.7).exp()
    assert kept.tolist()[0] == pytest.approx([0.5, 0.3, 0.0, 0.0])
    assert torch.equal(top_p_filter(logprobs, 1.0), logprobs)


def test_top_p_over_the_likeliest_candidates_equals_a_full_sort() -> None:
    torch.manual_seed(0)
    peaked = torch.randn(3, 49152) * 4  # the nucleus lies within the top candidates
    flat = torch.randn(1, 49152) * 0.1  # it does not: the whole vocabulary is sorted
    for logits in (peaked, flat, torch.cat([peaked, flat])):
        logprobs = torch.log_softmax(logits, -1)
        sorted_logprobs, order = logprobs.sort(dim=-1, descending=True)
        probs = sorted_logprobs.exp()
        dropped = sorted_logprobs.masked_fill(probs.cumsum(-1) - probs > 0.9, float("-inf"))
        expected = torch.empty_like(logprobs).scatter_(-1, order, dropped)
        assert torch.equal(top_p_filter(logprobs, 0.9), expected)


def test_reserved_cache_samples_like_the_default_cache(
    tiny_policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.trainer import sampling as sampling_module

    prompts = prompts_of(tiny_policy, ["Hi", "What is the capital city of France, please?"])
    eos_ids = torch.arange(0, tiny_policy.model.config.vocab_size, 3)  # rows end at many lengths
    reserved = draw(tiny_policy, prompts, seed=5, eos_ids=eos_ids, max_tokens=10)
    monkeypatch.setattr(sampling_module, "sampling_cache", lambda *args, **kwargs: None)
    default = draw(tiny_policy, prompts, seed=5, eos_ids=eos_ids, max_tokens=10)
    assert len(set(reserved.lengths.tolist())) > 2
    assert torch.equal(reserved.completion_ids, default.completion_ids)
    assert torch.allclose(reserved.logprobs, default.logprobs, atol=1e-5)


def test_merged_and_fast_decoding_sample_like_the_adapter(tiny_policy: Any) -> None:
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking adapter: B is zero at initialisation
        for name, parameter in tiny_policy.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    base_weights = {
        name: parameter.clone()
        for name, parameter in tiny_policy.model.named_parameters()
        if "base_layer" in name
    }
    # padded prompts and end-of-turn on a third of the vocabulary: masks and compaction
    prompts = prompts_of(tiny_policy, ["Hi", "What is the capital city of France, please?"])
    eos_ids = torch.arange(0, tiny_policy.model.config.vocab_size, 3)
    options = {"seed": 4, "max_tokens": 10, "eos_ids": eos_ids}
    with_adapter = draw(tiny_policy, prompts, **options)
    with tiny_policy.merged():
        merged = draw(tiny_policy, prompts, **options)
    with decoding(tiny_policy) as fast:
        assert fast is not None
        fused = draw(tiny_policy, prompts, fast=fast, **options)
    assert len(set(with_adapter.lengths.tolist())) > 2
    for other in (merged, fused):
        assert torch.equal(with_adapter.completion_ids, other.completion_ids)
        assert torch.allclose(with_adapter.logprobs, other.logprobs, atol=1e-4)
    after = dict(tiny_policy.model.named_parameters())
    assert all(torch.equal(after[name], weight) for name, weight in base_weights.items())


def test_fused_forward_follows_the_adapter_switch(tiny_policy: Any) -> None:
    with torch.no_grad():
        for name, parameter in tiny_policy.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    prompts = prompts_of(tiny_policy, ["Hi", "Tell me something longer"])
    rows = packed_rows(draw(tiny_policy, prompts, seed=3), 4)
    packed = pack(prompts.token_lists(), rows, tiny_policy.pad_id, "cpu")
    bias = additive_mask(packed.attention_mask, None)

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        fused = tiny_policy.fused_model().forward(packed.input_ids, bias, packed.position_ids)
        own = tiny_policy.decoder(
            input_ids=packed.input_ids, attention_mask=bias, position_ids=packed.position_ids
        ).last_hidden_state
        return fused, own

    with torch.no_grad():
        with_adapter = both()
        with tiny_policy.model.disable_adapter():
            without = both()
    for fused, own in (with_adapter, without):
        torch.testing.assert_close(fused, own, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(with_adapter[0], without[0], atol=1e-3)


def test_bf16_autocast_samples_and_trains(tiny_model_dir: Any) -> None:
    # the precision CUDA and CPUs with native bf16 use; here forced on the CPU
    from worker.trainer.models import load_policy

    torch.manual_seed(0)
    policy = load_policy(tiny_model_dir, lora_rank=4, lora_alpha=8, device="cpu", precision="bf16")
    assert policy.autocast_dtype == torch.bfloat16
    prompts = prompts_of(policy, ["Hi", "What is the capital city of France, please?"])
    with decoding(policy) as fast, policy.autocast():
        assert fast is not None
        rollout = draw(policy, prompts, seed=1, fast=fast)
    assert torch.isfinite(rollout.logprobs).all()
    packed = pack(prompts.token_lists(), packed_rows(rollout, 4), policy.pad_id, "cpu")
    with policy.autocast():
        scores = score_packed(policy, packed)
    scores.logprobs.sum().backward()
    grads = [p.grad for p in policy.trainable_parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
