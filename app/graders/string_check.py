"""string_check: exact or containment comparison of two rendered templates."""

from __future__ import annotations

from collections.abc import Callable

OPERATIONS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda text, reference: text == reference,
    "ne": lambda text, reference: text != reference,
    "like": lambda text, reference: reference in text,
    "ilike": lambda text, reference: reference.casefold() in text.casefold(),
}
# The graders guide spells `ne` as `neq`.
OPERATION_ALIASES = {"neq": "ne"}


def string_check(text: str, reference: str, operation: str) -> float:
    """1.0 when `operation` holds between the input and the reference, else 0.0."""
    compare = OPERATIONS[OPERATION_ALIASES.get(operation, operation)]
    return 1.0 if compare(text, reference) else 0.0
