"""grade(): one sample through any grader; build_grader(): a definition into a Grader."""

from __future__ import annotations

import time

from app.graders.base import Grader
from app.graders.config import GraderConfig
from app.graders.multi import MultiGrader
from app.graders.normalize import normalize_grader
from app.graders.result import GradeResult
from app.graders.sandbox_slots import SandboxSlots
from app.graders.text_graders import StringCheckGrader, TextSimilarityGrader


def build_grader(
    definition: dict,
    config: GraderConfig,
    *,
    warm: bool = False,
    slots: SandboxSlots | None = None,
) -> Grader:
    """A Grader for a normalized, valid definition. With `warm`, python graders keep a pool
    of sandboxes alive across calls (close() the grader to end them). Its python graders
    share `slots` (new ones for a top-level grader): the sandboxes they may run at once."""
    kind = definition["type"]
    if slots is None:
        slots = SandboxSlots(config.max_sandboxes_per_grader)
    if kind == "string_check":
        return StringCheckGrader(definition, config)
    if kind == "text_similarity":
        return TextSimilarityGrader(definition, config)
    if kind == "python":
        from app.graders.python_grader import PythonGrader

        return PythonGrader(definition, config, warm=warm, slots=slots)
    if kind == "score_model":
        from app.graders.model_graders import ScoreModelGrader

        return ScoreModelGrader(definition, config)
    if kind == "label_model":
        from app.graders.model_graders import LabelModelGrader

        return LabelModelGrader(definition, config)
    if kind == "multi":
        return MultiGrader(
            definition, config, lambda sub, cfg: build_grader(sub, cfg, warm=warm, slots=slots)
        )
    raise ValueError(f"unknown grader type {kind!r}")


def grade(grader: dict, sample: dict, item: dict, config: GraderConfig) -> GradeResult:
    """Grade one sample. Per-sample failures become error flags with reward 0, never
    exceptions; `grader` should have passed validate_grader()."""
    started = time.perf_counter()
    definition = normalize_grader(grader)
    built = build_grader(definition, config)
    try:
        result = built.grade_many([sample], [item])[0]
    finally:
        built.close()
    result.execution_time = time.perf_counter() - started
    return result
