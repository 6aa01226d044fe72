"""The grader object model: each definition becomes a Grader that scores many samples at once."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod

from app.graders.config import GraderConfig
from app.graders.errors import GraderError
from app.graders.result import GradeResult

logger = logging.getLogger("openrft.graders")


class Grader(ABC):
    def __init__(self, definition: dict, config: GraderConfig) -> None:
        self.definition = definition
        self.config = config
        self.name: str = definition["name"]
        self.type: str = definition["type"]

    @abstractmethod
    def grade_many(self, samples: list[dict], items: list[dict]) -> list[GradeResult]:
        """One result per (sample, item) pair, in order; never raises for a sample's failure."""

    def close(self) -> None:
        """Release processes or connections the grader holds; most hold none."""
        return None

    def new_result(self) -> GradeResult:
        return GradeResult(name=self.name, type=self.type)


class InProcessGrader(Grader):
    """A grader computed in this process, one sample at a time."""

    @abstractmethod
    def score(self, sample: dict, item: dict, result: GradeResult) -> float:
        """The reward; may fill result.scores; raises GraderError for a per-sample failure."""

    def grade_many(self, samples: list[dict], items: list[dict]) -> list[GradeResult]:
        return [self.grade_one(sample, item) for sample, item in zip(samples, items, strict=True)]

    def grade_one(self, sample: dict, item: dict) -> GradeResult:
        result = self.new_result()
        started = time.perf_counter()
        try:
            result.reward = self.score(sample, item, result)
        except GraderError as error:
            error.apply(result.errors)
            result.reward = 0.0
        except Exception:
            logger.exception("grader %r failed on a sample", self.name)
            result.errors["other_error"] = True
            result.reward = 0.0
        result.execution_time = time.perf_counter() - started
        return result
