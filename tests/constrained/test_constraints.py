"""Grammar-constrained decoding on SmolLM2's real vocabulary: what the masks allow and refuse."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import torch

from worker.constrained import Constraint, ConstraintBatch, ConstraintError, vocab_info

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "enum": ["oui", "non", "東京 ☃"]},
        "sure": {"type": "boolean"},
        "count": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["answer", "sure", "count"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from worker.trainer.tiny import load_smollm2_tokenizer

    return load_smollm2_tokenizer()


@pytest.fixture(scope="module")
def vocab(tokenizer: Any) -> Any:
    return vocab_info(tokenizer)


def random_decode(
    batch: ConstraintBatch, vocab_size: int, steps: int, seed: int
) -> list[list[int]]:
    """Tokens drawn from random logits under the batch's masks until each row draws an end."""
    generator = torch.Generator().manual_seed(seed)
    tokens: list[list[int]] = [[] for _ in range(len(batch))]
    live = list(range(len(batch)))
    for _ in range(steps):
        logits = torch.randn((len(live), vocab_size + 3), generator=generator)
        batch.mask(logits, live)
        drawn = torch.distributions.Categorical(logits=logits).sample().tolist()
        batch.advance(drawn, live)
        for row, token in zip(live, drawn, strict=True):
            tokens[row].append(token)
        live = [row for row in live if tokens[row][-1] not in batch.vocab.eos_ids]
        if not live:
            break
    return tokens


def test_every_row_drawn_under_a_schema_parses_and_matches_it(tokenizer: Any, vocab: Any) -> None:
    torch.manual_seed(0)
    constraint = Constraint.from_json_schema(ANSWER_SCHEMA)
    batch = ConstraintBatch(vocab, [constraint] * 6)
    rows = random_decode(batch, vocab.size, steps=200, seed=1)
    assert all(batch.finished)
    for tokens in rows:
        assert tokens[-1] == tokenizer.eos_token_id
        jsonschema.validate(json.loads(tokenizer.decode(tokens[:-1])), ANSWER_SCHEMA)


def test_multibyte_characters_split_across_tokens_are_accepted(tokenizer: Any, vocab: Any) -> None:
    text = json.dumps({"answer": "東京 ☃", "sure": True, "count": 7}, ensure_ascii=False)
    tokens = tokenizer.encode(text, add_special_tokens=False)
    # the snowman's three UTF-8 bytes are not one token: byte pieces must pass the grammar too
    assert any("\ufffd" in tokenizer.decode([token]) for token in tokens)
    batch = ConstraintBatch(vocab, [Constraint.from_json_schema(ANSWER_SCHEMA)])
    for token in tokens:
        logits = torch.zeros((1, vocab.size))
        batch.mask(logits)
        assert logits[0, token] == 0.0
        batch.advance([token])
    assert batch.finished == [True]
    logits = torch.zeros((1, vocab.size))
    batch.mask(logits)
    assert torch.isfinite(logits[0]).nonzero().squeeze(1).tolist() == [tokenizer.eos_token_id]


def test_json_object_allows_only_an_object_to_open(tokenizer: Any, vocab: Any) -> None:
    batch = ConstraintBatch(vocab, [Constraint.from_json_object()])
    logits = torch.zeros((1, vocab.size))
    batch.mask(logits)
    allowed = [tokenizer.decode([t]) for t in torch.isfinite(logits[0]).nonzero().squeeze(1)]
    assert allowed and all(text.startswith("{") for text in allowed)
    with pytest.raises(ConstraintError, match="refuses"):
        batch.advance(tokenizer.encode("[", add_special_tokens=False))


def test_rows_without_a_constraint_and_rows_not_named_are_left_alone(vocab: Any) -> None:
    batch = ConstraintBatch(vocab, [None, Constraint.from_json_object(), None])
    logits = torch.zeros((2, vocab.size + 5))
    batch.mask(logits, rows=[2, 1])
    assert torch.isfinite(logits[0]).all()
    assert not torch.isfinite(logits[1, vocab.size :]).any()
    assert 0 < int(torch.isfinite(logits[1]).sum()) < vocab.size
    assert batch.constrained == [False, True, False]


def test_a_row_can_be_constrained_from_the_middle_of_a_completion(
    tokenizer: Any, vocab: Any
) -> None:
    batch = ConstraintBatch(vocab, [None])
    for token in tokenizer.encode("Calling [x", add_special_tokens=False):
        batch.advance([token])  # free text: anything goes
    batch.start(0, Constraint.from_grammar('start: "call" %json{"type": "integer"}'))
    assert batch.accepting == [False]
    for token in tokenizer.encode("call42", add_special_tokens=False):
        batch.advance([token])
    assert batch.accepting == [True]
    with pytest.raises(ConstraintError):
        batch.advance(tokenizer.encode("x", add_special_tokens=False))


@pytest.mark.parametrize(
    ("response_format", "message"),
    [
        ({"type": "json_schema", "json_schema": {"name": "a", "strict": True,
          "schema": {"type": "string", "format": "postcode"}}}, "Unknown format"),
        ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "spaceship"}}},
         "Invalid type"),
    ],
)  # fmt: skip
def test_a_schema_that_cannot_be_enforced_is_refused_with_the_reason(
    response_format: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConstraintError, match=message):
        Constraint.from_response_format(response_format)


def test_response_formats_map_to_constraints() -> None:
    assert Constraint.from_response_format(None) is None
    assert Constraint.from_response_format({"type": "text"}) is None
    assert Constraint.from_response_format({"type": "json_object"}) == Constraint.from_json_object()
    named = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
    constraint = Constraint.from_response_format(named)
    assert constraint is not None and constraint.description == "JSON schema 'answer'"


def test_the_vocabulary_is_built_once_per_tokenizer_and_end_tokens(tokenizer: Any) -> None:
    assert vocab_info(tokenizer) is vocab_info(tokenizer, [tokenizer.eos_token_id])
    assert vocab_info(tokenizer, [0, 2]) is not vocab_info(tokenizer)
    assert vocab_info(tokenizer, [0, 2]).eos_ids == (0, 2)


def test_a_row_freed_once_its_arguments_are_complete_writes_on(tokenizer: Any, vocab: Any) -> None:
    arguments = Constraint.from_json_schema(
        {"type": "object", "properties": {"unit": {"enum": ["°C", "°F"]}}, "required": ["unit"],
         "additionalProperties": False}
    )  # fmt: skip
    batch = ConstraintBatch(vocab, [arguments])
    for token in tokenizer.encode('{"unit": "°C"}', add_special_tokens=False):
        batch.advance([token])
    assert batch.finished == [True]
    batch.start(0, None)
    logits = torch.zeros((1, vocab.size))
    batch.mask(logits)
    assert torch.isfinite(logits).all()
    batch.advance(tokenizer.encode("</tool_call>", add_special_tokens=False)[:1])
