"""The JSON-object prefix automaton that enforces `response_format: json_object`."""

from __future__ import annotations

import json

import pytest

from worker.inference.json_prefix import INITIAL, advance, closing, is_complete

OBJECTS = [
    "{}",
    '{ "a" : 1 } ',
    '{"a": [1, -2.5e+3, 0, true, false, null, "x\\n\\u00e9"], "b": {"c": {}}}',
    '{"nested": [[], [{}], {"k": [0.5E-2]}]}',
]


@pytest.mark.parametrize("text", OBJECTS)
def test_accepts_every_prefix_of_an_object_and_completes_it(text: str) -> None:
    stripped = text.rstrip()
    for end in range(len(stripped) + 1):
        state = advance(INITIAL, stripped[:end])
        assert state is not None, stripped[:end]
        completed = stripped[:end] + closing(state)
        assert isinstance(json.loads(completed), dict), completed
    final = advance(INITIAL, stripped)
    assert final is not None and is_complete(final)


@pytest.mark.parametrize(
    "text",
    [
        " {",
        "[",
        "1",
        '"a"',
        "{a",
        '{"a" 1',
        '{"a":}',
        '{"a":1,}',
        "{]",
        '{"a":01',
        '{"a":tru}',
        '{"a":"\\x"',
    ],
)
def test_rejects_what_no_object_starts_with(text: str) -> None:
    assert advance(INITIAL, text) is None


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", "{}"),
        ("{", "}"),
        ('{"ke', '":null}'),
        ('{"k"', ":null}"),
        ('{"k":', "null}"),
        ('{"k":[1,', "null]}"),
        ('{"k":1,', '"":null}'),
        ('{"k":-', "0}"),
        ('{"k":1.', "0}"),
        ('{"k":"a\\u0', '000"}'),
        ('{"k":tr', "ue}"),
        ('{"k":"\\', 'n"}'),
    ],
)
def test_closing_is_the_shortest_completion(prefix: str, expected: str) -> None:
    state = advance(INITIAL, prefix)
    assert state is not None
    assert closing(state) == expected


def test_control_characters_are_not_allowed_inside_strings() -> None:
    assert advance(INITIAL, '{"a":"line\nbreak"}') is None
    escaped = advance(INITIAL, '{"a":"line\\nbreak"}')
    assert escaped is not None and closing(escaped) == ""


def test_nothing_but_whitespace_follows_the_closed_object() -> None:
    state = advance(INITIAL, "{}")
    assert state is not None and closing(state) == ""
    assert advance(state, "  \n") == state
    assert advance(state, ",") is None
