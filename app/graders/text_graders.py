"""string_check and text_similarity: graders that compare two rendered templates in-process."""

from __future__ import annotations

from app.graders.base import InProcessGrader
from app.graders.config import GraderConfig
from app.graders.errors import GraderError
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
    def __init__(self, definition: dict, config: GraderConfig) -> None:
        super().__init__(definition, config)
        self.metric: str = definition["evaluation_metric"]
        self._vectors: dict[str, list[float]] = {}

    def grade_many(self, samples: list[dict], items: list[dict]) -> list[GradeResult]:
        if self.metric == "cosine" and len(samples) > 1:
            # one embedding call for the whole batch instead of one per sample
            self._vectors = self._embed_all(samples, items)
        try:
            return super().grade_many(samples, items)
        finally:
            self._vectors = {}

    def score(self, sample: dict, item: dict, result: GradeResult) -> float:
        text, reference = self._texts(sample, item)
        if len(text) > MAX_TEXT_CHARS or len(reference) > MAX_TEXT_CHARS:
            result.errors["truncated_observation_error"] = True
        value = self._similarity(text[:MAX_TEXT_CHARS], reference[:MAX_TEXT_CHARS])
        result.scores[self.metric] = value
        threshold = self.definition.get("pass_threshold")
        if threshold is not None:
            # evals report pass/fail; the reward stays the score itself
            result.scores["passed"] = 1.0 if value >= threshold else 0.0
        return value

    def _texts(self, sample: dict, item: dict) -> tuple[str, str]:
        text = render(self.definition["input"], sample, item)
        return text, render(self.definition["reference"], sample, item)

    def _similarity(self, text: str, reference: str) -> float:
        if (
            text.strip()
            and reference.strip()
            and text in self._vectors
            and reference in self._vectors
        ):
            from app.graders.embeddings import cosine

            return min(1.0, max(0.0, cosine(self._vectors[text], self._vectors[reference])))
        return similarity(text, reference, self.metric, self.config)

    def _embed_all(self, samples: list[dict], items: list[dict]) -> dict[str, list[float]]:
        from app.graders.embeddings import embed

        texts: set[str] = set()
        for sample, item in zip(samples, items, strict=True):
            try:
                pair = self._texts(sample, item)
            except GraderError:
                continue  # flagged when the sample itself is scored
            if all(part.strip() for part in pair):
                texts.update(part[:MAX_TEXT_CHARS] for part in pair)
        ordered = sorted(texts)
        try:
            return dict(zip(ordered, embed(ordered, self.config), strict=True))
        except GraderError:
            return {}  # each sample retries alone and records its own error
