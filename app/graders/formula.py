"""The multi grader's `calculate_output`: a small arithmetic language, parsed without eval.

Grammar (`^` is right-associative and binds tighter than unary minus, so -2^2 = -4):
    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("+" | "-") unary | power
    power  := atom ("^" unary)?
    atom   := NUMBER | NAME | NAME "(" expr ("," expr)* ")" | "(" expr ")"
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

FUNCTIONS: dict[str, tuple[Callable[..., float], int, int]] = {
    # name: (function, min arguments, max arguments)
    # over the arguments themselves, so min(a) is a (builtin min(a) would iterate a float)
    "min": (lambda *values: min(values), 1, 64),
    "max": (lambda *values: max(values), 1, 64),
    "abs": (abs, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "exp": (math.exp, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 2),  # natural log; log(x, base) also accepted
}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/^(),]))"
)
MAX_LENGTH = 10_000


class FormulaError(ValueError):
    """calculate_output does not parse, or names something unknown."""


class FormulaEvaluationError(ArithmeticError):
    """The formula parsed but has no finite value for these rewards (e.g. division by zero)."""


@dataclass(frozen=True)
class Formula:
    source: str
    tree: tuple
    names: frozenset[str]

    def evaluate(self, values: dict[str, float]) -> float:
        try:
            result = float(_evaluate(self.tree, values))
        except (ArithmeticError, ValueError) as exc:
            raise FormulaEvaluationError(f"{self.source!r}: {exc}") from None
        if not math.isfinite(result):
            raise FormulaEvaluationError(f"{self.source!r} is not finite for {values}")
        return result


def _tokenize(source: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    source = source.rstrip()
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None or match.end() == position:
            raise FormulaError(f"unexpected character {source[position]!r} at {position}")
        kind = match.lastgroup or ""
        tokens.append((kind, match[kind]))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0
        self.names: set[str] = set()

    def peek(self) -> str | None:
        if self.position < len(self.tokens):
            return self.tokens[self.position][1]
        return None

    def take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise FormulaError("unexpected end of formula")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expect(self, text: str) -> None:
        kind, value = self.take()
        if value != text or kind != "op":
            raise FormulaError(f"expected {text!r}, found {value!r}")

    def expr(self) -> tuple:
        node = self.term()
        while self.peek() in ("+", "-"):
            node = (self.take()[1], node, self.term())
        return node

    def term(self) -> tuple:
        node = self.unary()
        while self.peek() in ("*", "/"):
            node = (self.take()[1], node, self.unary())
        return node

    def unary(self) -> tuple:
        if self.peek() in ("+", "-"):
            operator = self.take()[1]
            operand = self.unary()
            return ("neg", operand) if operator == "-" else operand
        return self.power()

    def power(self) -> tuple:
        node = self.atom()
        if self.peek() == "^":
            self.take()
            node = ("^", node, self.unary())
        return node

    def atom(self) -> tuple:
        kind, value = self.take()
        if kind == "number":
            return ("num", float(value))
        if kind == "name":
            return self.call(value) if self.peek() == "(" else self.name(value)
        if value == "(":
            node = self.expr()
            self.expect(")")
            return node
        raise FormulaError(f"unexpected {value!r}")

    def name(self, value: str) -> tuple:
        self.names.add(value)
        return ("var", value)

    def call(self, function: str) -> tuple:
        if function not in FUNCTIONS:
            raise FormulaError(f"unknown function {function!r}; known: {', '.join(FUNCTIONS)}")
        self.expect("(")
        arguments = [self.expr()]
        while self.peek() == ",":
            self.take()
            arguments.append(self.expr())
        self.expect(")")
        _, least, most = FUNCTIONS[function]
        if not least <= len(arguments) <= most:
            raise FormulaError(
                f"{function}() takes {least}..{most} arguments, got {len(arguments)}"
            )
        return ("call", function, tuple(arguments))


@lru_cache(maxsize=1024)
def parse_formula(source: str) -> Formula:
    """Parse `calculate_output`; FormulaError on bad syntax or unknown functions."""
    if not isinstance(source, str) or not source.strip():
        raise FormulaError("the formula is empty")
    if len(source) > MAX_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_LENGTH} characters")
    parser = _Parser(_tokenize(source))
    try:
        tree = parser.expr()
    except RecursionError:
        raise FormulaError("the formula is nested too deeply") from None
    if parser.position != len(parser.tokens):
        raise FormulaError(f"unexpected {parser.tokens[parser.position][1]!r}")
    return Formula(source, tree, frozenset(parser.names))


def _evaluate(node: tuple, values: dict[str, float]) -> float:
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "var":
        return values[node[1]]
    if kind == "neg":
        return -_evaluate(node[1], values)
    if kind == "call":
        function = FUNCTIONS[node[1]][0]
        return function(*(_evaluate(argument, values) for argument in node[2]))
    left, right = _evaluate(node[1], values), _evaluate(node[2], values)
    if kind == "+":
        return left + right
    if kind == "-":
        return left - right
    if kind == "*":
        return left * right
    if kind == "/":
        return left / right
    return math.pow(left, right)
