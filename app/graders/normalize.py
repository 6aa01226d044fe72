"""normalize_grader: the canonical form echoed by /validate, stored on jobs and graded."""

from __future__ import annotations

import copy

from app.graders.string_check import OPERATION_ALIASES

DEFAULT_SCORE_RANGE = [0.0, 1.0]


def wrap_sub_graders(graders: object) -> object:
    """A multi's `graders` as a name -> grader map; a single grader is keyed by its name."""
    if isinstance(graders, dict) and isinstance(graders.get("type"), str):
        return {str(graders.get("name") or graders["type"]): graders}
    return graders


def normalize_grader(grader: dict) -> dict:
    """Canonical copy: multi `graders` as a map, names defaulted, `neq` spelled `ne`,
    score_model `range` filled. Leaves anything it does not understand untouched."""
    if not isinstance(grader, dict):
        return grader
    normal = copy.deepcopy(grader)
    _normalize(normal, default_name=str(normal.get("type") or "grader"))
    return normal


def _normalize(grader: dict, default_name: str) -> None:
    if not grader.get("name"):
        grader["name"] = default_name
    kind = grader.get("type")
    if kind == "string_check" and grader.get("operation") in OPERATION_ALIASES:
        grader["operation"] = OPERATION_ALIASES[grader["operation"]]
    if kind == "score_model" and grader.get("range") is None:
        grader["range"] = list(DEFAULT_SCORE_RANGE)
    if kind == "multi":
        graders = wrap_sub_graders(grader.get("graders"))
        if isinstance(graders, dict):
            for key, sub_grader in graders.items():
                if isinstance(sub_grader, dict):
                    _normalize(sub_grader, default_name=str(key))
        grader["graders"] = graders
