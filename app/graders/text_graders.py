"""string_check and text_similarity: graders that compare two rendered templates in-process."""

from __future__ import annotations

from app.graders.base import InProcessGrader
from app.graders.result import GradeResult
from app.graders.similarity import MAX_TEXT_CHARS, similarity
from app.graders.string_check import string_check
from app.graders.templates import render


class StringCheckGrader(InProcessGrader):
    def score(self, sample: dict, item: dict, result: GradeResult) -> float:
        text = render(self.definition["input"], sample, item)
        reference = render(self.definition["reference"], sample, item)
        return string_check(text, reference, self.definition["operation"])


class TextSimilarityGrader(InProcessGrader):
    def score(self, sample: dict, item: dict, result: GradeResult) -> float:
        text = render(self.definition["input"], sample, item)
        reference = render(self.definition["reference"], sample, item)
        metric = self.definition["evaluation_metric"]
        if len(text) > MAX_TEXT_CHARS or len(reference) > MAX_TEXT_CHARS:
            result.errors["truncated_observation_error"] = True
            text, reference = text[:MAX_TEXT_CHARS], reference[:MAX_TEXT_CHARS]
        value = similarity(text, reference, metric, self.config)
        result.scores[metric] = value
        threshold = self.definition.get("pass_threshold")
        if threshold is not None:
            # evals report pass/fail; the reward stays the score itself
            result.scores["passed"] = 1.0 if value >= threshold else 0.0
        return value
