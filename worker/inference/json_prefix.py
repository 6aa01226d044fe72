"""A pushdown automaton over characters that accepts prefixes of one JSON object.

`response_format: {"type": "json_object"}` is enforced with it: a token is allowed only if its text
keeps the output a prefix of some JSON object, and `closing()` gives the shortest text that
completes the object, so output cut short by `max_tokens` can still be closed and parse.

States are immutable tuples `(stack, mode, detail)`: `stack` holds one character per open
container ("o" object, "a" array), `mode` says what may come next, `detail` is mode-specific.
"""

from __future__ import annotations

from typing import cast

WHITESPACE = frozenset(" \t\n\r")
DIGITS = frozenset("0123456789")
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
ESCAPES = frozenset('"\\/bfnrt')
LITERALS = {"t": "rue", "f": "alse", "n": "ull"}

# modes
START = "start"  # before the top-level "{"
VALUE = "value"  # a value must come (after ":" or an array's ",")
KEY_OR_CLOSE = "key_or_close"  # just after "{"
KEY = "key"  # after an object's ","
COLON = "colon"  # after a key
VALUE_OR_CLOSE = "value_or_close"  # just after "["
AFTER_VALUE = "after_value"  # after a value inside a container
DONE = "done"  # the top-level object is closed
STRING = "string"  # detail: True for a key
ESCAPE = "escape"  # after a backslash; detail: is_key
UNICODE = "unicode"  # after "\u"; detail: (hex digits left, is_key)
LITERAL = "literal"  # inside true/false/null; detail: the letters still to come
NUMBER = "number"  # detail: the number's sub-state, below

# number sub-states; the "complete" ones may end the number
SIGN, ZERO, INTEGER, POINT, FRACTION, EXP, EXP_SIGN, EXPONENT = range(8)
NUMBER_COMPLETE = frozenset({ZERO, INTEGER, FRACTION, EXPONENT})

State = tuple[str, str, object]
INITIAL: State = ("", START, None)

_CLOSERS = {"o": "}", "a": "]"}


def advance(state: State, text: str) -> State | None:
    """The state after `text`, or None when `text` cannot continue a JSON object."""
    for char in text:
        next_state = _step(state, char)
        if next_state is None:
            return None
        state = next_state
    return state


def is_complete(state: State) -> bool:
    return state[1] == DONE


def closing(state: State) -> str:
    """The shortest text that turns the prefix into a complete JSON object."""
    stack, mode, detail = state
    if mode == START:
        return "{}"
    return _finish_current(mode, detail) + "".join(_CLOSERS[kind] for kind in reversed(stack))


def _finish_current(mode: str, detail: object) -> str:
    """Text that ends the token being written and leaves a value in place."""
    key_value = ":null"
    if mode == STRING:
        return '"' + (key_value if detail else "")
    if mode == ESCAPE:
        return 'n"' + (key_value if detail else "")
    if mode == UNICODE:
        left, is_key = cast(tuple[int, bool], detail)
        return "0" * left + '"' + (key_value if is_key else "")
    if mode == LITERAL:
        return str(detail)
    if mode == NUMBER:
        return "" if detail in NUMBER_COMPLETE else "0"
    return {VALUE: "null", KEY: '"":null', COLON: key_value}.get(mode, "")


def _value_done(stack: str) -> State:
    return (stack, AFTER_VALUE if stack else DONE, None)


def _start_value(stack: str, char: str) -> State | None:
    if char == "{":
        return (stack + "o", KEY_OR_CLOSE, None)
    if char == "[":
        return (stack + "a", VALUE_OR_CLOSE, None)
    if char == '"':
        return (stack, STRING, False)
    if char == "-":
        return (stack, NUMBER, SIGN)
    if char == "0":
        return (stack, NUMBER, ZERO)
    if char in DIGITS:
        return (stack, NUMBER, INTEGER)
    if char in LITERALS:
        return (stack, LITERAL, LITERALS[char])
    return None


def _close(stack: str, char: str) -> State | None:
    if stack and _CLOSERS[stack[-1]] == char:
        return _value_done(stack[:-1])
    return None


def _step(state: State, char: str) -> State | None:
    stack, mode, detail = state
    if mode == STRING:
        return _step_string(stack, detail is True, char)
    if mode == ESCAPE:
        if char == "u":
            return (stack, UNICODE, (4, detail))
        return (stack, STRING, detail) if char in ESCAPES else None
    if mode == UNICODE:
        left, is_key = cast(tuple[int, bool], detail)
        if char not in HEX_DIGITS:
            return None
        return (stack, UNICODE, (left - 1, is_key)) if left > 1 else (stack, STRING, is_key)
    if mode == LITERAL:
        rest = str(detail)
        if char != rest[0]:
            return None
        return (stack, LITERAL, rest[1:]) if len(rest) > 1 else _value_done(stack)
    if mode == NUMBER:
        return _step_number(stack, cast(int, detail), char)
    # no whitespace before the object: a reply that opens with it tends to ramble on in it
    if char in WHITESPACE and mode != START:
        return state
    return _step_structural(stack, mode, char)


def _step_string(stack: str, is_key: bool, char: str) -> State | None:
    if char == '"':
        return (stack, COLON, None) if is_key else _value_done(stack)
    if char == "\\":
        return (stack, ESCAPE, is_key)
    if ord(char) < 0x20:
        return None
    return (stack, STRING, is_key)


def _step_structural(stack: str, mode: str, char: str) -> State | None:
    if mode == START:
        return (stack + "o", KEY_OR_CLOSE, None) if char == "{" else None
    if mode in (KEY_OR_CLOSE, KEY):
        if char == '"':
            return (stack, STRING, True)
        return _close(stack, char) if mode == KEY_OR_CLOSE else None
    if mode == COLON:
        return (stack, VALUE, None) if char == ":" else None
    if mode == VALUE:
        return _start_value(stack, char)
    if mode == VALUE_OR_CLOSE:
        return _close(stack, char) or _start_value(stack, char)
    if mode == AFTER_VALUE:
        if char == ",":
            return (stack, KEY if stack[-1] == "o" else VALUE, None)
        return _close(stack, char)
    return None


_NUMBER_MOVES: dict[int, dict[str, int]] = {
    SIGN: {"0": ZERO, **dict.fromkeys("123456789", INTEGER)},
    ZERO: {".": POINT, "e": EXP, "E": EXP},
    INTEGER: {**dict.fromkeys(DIGITS, INTEGER), ".": POINT, "e": EXP, "E": EXP},
    POINT: dict.fromkeys(DIGITS, FRACTION),
    FRACTION: {**dict.fromkeys(DIGITS, FRACTION), "e": EXP, "E": EXP},
    EXP: {**dict.fromkeys(DIGITS, EXPONENT), "+": EXP_SIGN, "-": EXP_SIGN},
    EXP_SIGN: dict.fromkeys(DIGITS, EXPONENT),
    EXPONENT: dict.fromkeys(DIGITS, EXPONENT),
}


def _step_number(stack: str, sub_state: int, char: str) -> State | None:
    moved = _NUMBER_MOVES[sub_state].get(char)
    if moved is not None:
        return (stack, NUMBER, moved)
    if sub_state not in NUMBER_COMPLETE:
        return None
    # the character ends the number and is read as what follows a value
    return _step(_value_done(stack), char)
