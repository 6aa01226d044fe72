"""Stop strings while sampling: a completion ends on the token that completes one, its text
is graded without it, and a plain-template model stops at its next turn; its answer is read
after the template's space."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch

from app.graders import BatchGrader, GraderConfig
from worker.trainer.data import encode_prompt
from worker.trainer.grpo import decode_completions, grade
from worker.trainer.models import PLAIN_TURN_STOPS, load_policy, load_tokenizer
from worker.trainer.sampling import PromptBatch, decoding, sample
from worker.trainer.stops import StopWatch, text_before_stop, turn_answer

CONTAINS_Y = {
    "type": "string_check",
    "name": "contains_y",
    "input": "{{sample.output_text}}",
    "reference": "y",
    "operation": "like",
}


def rollout_of(policy: Any, stops: tuple[str, ...] | None, seed: int = 3) -> Any:
    rows = [{"messages": [{"role": "user", "content": text}]} for text in ("One", "Two")]
    ids = [encode_prompt(policy.tokenizer, row) for row in rows]
    prompts = PromptBatch.from_ids(ids, policy.pad_id, policy.device)
    generator = torch.Generator().manual_seed(seed)
    with decoding(policy) as fast:
        return sample(policy, prompts, 4, 10, 1.0, 1.0, generator, fast=fast, stops=stops)


def test_text_before_stop_leaves_the_stop_out() -> None:
    assert text_before_stop(" Paris.\nUser: And Rome?", PLAIN_TURN_STOPS) == " Paris."
    assert text_before_stop("ab|cd;ef", ("|", ";")) == "ab"
    assert text_before_stop("ab;cd|ef", ("|", ";")) == "ab"
    assert text_before_stop("no stop here", PLAIN_TURN_STOPS) == "no stop here"


def test_a_turn_answer_leaves_out_the_separator_and_the_way_into_the_next_turn() -> None:
    assert turn_answer(" Paris \n\nUser: And Rome?", " ", PLAIN_TURN_STOPS) == "Paris"
    assert turn_answer(" Paris,\n France\nUser:", " ", PLAIN_TURN_STOPS) == "Paris,\n France"
    # without a turn stop, only the separator goes: the budget cut the answer short
    assert turn_answer(" Paris \n", " ", PLAIN_TURN_STOPS) == "Paris \n"
    assert turn_answer(" Paris \n", "", ()) == " Paris \n"


def test_the_watch_fires_on_the_token_that_completes_the_stop(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    texts = [" The capital of France is Paris.\nUser: And Rome?", " Paris\n\nUser:"]
    encoded = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    width = max(len(ids) for ids in encoded)
    tokens = torch.tensor([ids + [0] * (width - len(ids)) for ids in encoded])
    # the stop spans several tokens: the first prefix whose text holds it
    completing = [
        next(i for i in range(len(ids)) if "\nUser:" in tokenizer.decode(ids[: i + 1]))
        for ids in encoded
    ]
    assert all(index >= 2 for index in completing)
    watch = StopWatch(tokenizer, PLAIN_TURN_STOPS)
    rows = torch.arange(2)
    for t in range(width):
        live = torch.tensor([t < len(ids) for ids in encoded])
        fired = watch.finished(tokens, rows[live], t).tolist()
        expected = [
            t >= index for index, alive in zip(completing, live.tolist(), strict=True) if alive
        ]
        assert fired == expected, t


def test_a_completion_ends_on_its_stop_string(tiny_policy: Any) -> None:
    rollout = rollout_of(tiny_policy, stops=("y",))
    ended = rollout.ended.tolist()
    assert any(ended) and not all(ended), "the test needs rows that stop and rows that run on"
    eos = set(tiny_policy.eos_ids.tolist())
    decode = tiny_policy.tokenizer.decode
    for ids, row_ended in zip(rollout.completions(), ended, strict=True):
        if not row_ended:
            assert len(ids) == 10 and "y" not in decode(ids)
        elif ids[-1] not in eos:  # the stop's token is kept and scored, like end-of-sequence
            assert "y" in decode(ids) and "y" not in decode(ids[:-1])
    # without the stop, the same rows run on past it
    assert not rollout_of(tiny_policy, stops=()).ended.any()
    # by default, a policy's own turn stops end its completions
    stopping = dataclasses.replace(tiny_policy, turn_stops=("y",))
    assert torch.equal(rollout_of(stopping, stops=None).completion_ids, rollout.completion_ids)


def test_the_grader_sees_the_answer_without_its_stop(tiny_policy: Any) -> None:
    rollout = rollout_of(tiny_policy, stops=("y",))
    items = [{}, {}]
    with BatchGrader(CONTAINS_Y, GraderConfig()) as grader:
        graded = grade(
            dataclasses.replace(tiny_policy, turn_stops=("y",)), grader, rollout, items, 4
        )
        assert graded.rewards.sum() == 0
        assert grade(tiny_policy, grader, rollout, items, 4).rewards.sum() > 0
    texts = [tiny_policy.tokenizer.decode(ids) for ids in rollout.completions()]
    assert graded.texts == [text.split("y")[0].rstrip() if "y" in text else text for text in texts]


def test_a_plain_template_model_stops_at_its_next_turn(
    tiny_model_dir: Path, tmp_path: Path, tiny_policy: Any
) -> None:
    pretrained = tmp_path / "pretrained"
    shutil.copytree(tiny_model_dir, pretrained)
    (pretrained / "chat_template.jinja").unlink()
    policy = load_policy(pretrained, lora_rank=4, lora_alpha=8, device="cpu", precision="fp32")
    assert (policy.turn_stops, policy.answer_separator) == (PLAIN_TURN_STOPS, " ")
    assert (tiny_policy.turn_stops, tiny_policy.answer_separator) == ((), "")


def test_the_answer_is_read_after_the_templates_separator(tiny_policy: Any) -> None:
    rollout = rollout_of(tiny_policy, stops=())
    texts = decode_completions(tiny_policy, rollout)
    assert any(text.startswith(" ") for text in texts), "the test needs a leading space"
    plain = dataclasses.replace(tiny_policy, answer_separator=" ")
    assert decode_completions(plain, rollout) == [text.removeprefix(" ") for text in texts]
