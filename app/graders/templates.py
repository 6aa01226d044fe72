"""`{{ item.path }}` / `{{ sample.path }}` substitution, with JSON-path-like keys and indices."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from app.graders.errors import GraderError
from app.graders.sample import output_is_json

NAMESPACES = ("item", "sample")
_VARIABLE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_STEP = re.compile(
    r"""\.\s*(?P<key>[^.\[\]\s]+)\s*"""
    r"""|\[\s*(?P<index>-?\d+)\s*\]\s*"""
    r"""|\[\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)')\s*\]\s*"""
)
_HEAD = re.compile(r"\s*(?P<namespace>[A-Za-z_][A-Za-z0-9_]*)\s*")


class TemplateSyntaxError(ValueError):
    pass


@lru_cache(maxsize=4096)
def parse_variable(expression: str) -> tuple[str, tuple[str | int, ...]]:
    """Split `item.a[0].b` into ("item", ("a", 0, "b")); raise TemplateSyntaxError if malformed."""
    head = _HEAD.match(expression)
    if head is None:
        raise TemplateSyntaxError(f"'{{{{{expression}}}}}' is not a variable")
    steps: list[str | int] = []
    position = head.end()
    while position < len(expression):
        step = _STEP.match(expression, position)
        if step is None:
            raise TemplateSyntaxError(f"cannot parse '{{{{{expression}}}}}' at {position}")
        if step["index"] is not None:
            steps.append(int(step["index"]))
        else:
            steps.append(step["key"] or step["dq"] or step["sq"] or "")
        position = step.end()
    return head["namespace"], tuple(steps)


def variables(template: str) -> list[str]:
    """The raw expressions between `{{` and `}}` in `template`."""
    return [match.group(1) for match in _VARIABLE.finditer(template)]


def check_template(template: str) -> list[str]:
    """Problems with a template's variables: bad syntax or a namespace other than item/sample."""
    problems = []
    for expression in variables(template):
        try:
            namespace, _ = parse_variable(expression)
        except TemplateSyntaxError as exc:
            problems.append(str(exc))
            continue
        if namespace not in NAMESPACES:
            problems.append(
                f"'{{{{{expression.strip()}}}}}' uses namespace '{namespace}'; "
                "only 'item' and 'sample' exist"
            )
    return problems


def _lookup(value: Any, steps: tuple[str | int, ...], expression: str) -> Any:
    for step in steps:
        if isinstance(value, dict) and not isinstance(step, int) and step in value:
            value = value[step]
        elif isinstance(value, dict) and isinstance(step, int) and str(step) in value:
            value = value[str(step)]
        elif isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
            value = value[step]
        elif isinstance(value, list) and isinstance(step, str) and step.isdigit():
            index = int(step)
            if index >= len(value):
                raise GraderError("invalid_variable_error", f"cannot resolve {expression}")
            value = value[index]
        else:
            raise GraderError("invalid_variable_error", f"cannot resolve {expression}")
    return value


def resolve(expression: str, sample: dict, item: dict) -> Any:
    """The value a variable names; GraderError if it cannot be resolved."""
    try:
        namespace, steps = parse_variable(expression)
    except TemplateSyntaxError as exc:
        raise GraderError("invalid_variable_error", str(exc)) from None
    if namespace == "item":
        return _lookup(item, steps, expression)
    if namespace != "sample":
        raise GraderError("invalid_variable_error", f"unknown namespace {namespace!r}")
    if steps and steps[0] == "output_json" and not output_is_json(sample):
        raise GraderError("sample_parse_error", "the sample output is not valid JSON")
    return _lookup(sample, steps, expression)


def to_text(value: Any) -> str:
    """Strings as they are; anything else as compact JSON (numbers, null, objects)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def render(template: str, sample: dict, item: dict) -> str:
    """Substitute every `{{ ... }}` in `template`; GraderError on an unresolvable variable."""
    if "{{" not in template:
        return template
    return _VARIABLE.sub(lambda match: to_text(resolve(match.group(1), sample, item)), template)
