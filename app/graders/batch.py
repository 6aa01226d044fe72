"""BatchGrader: the trainer's interface, many (sample, item) pairs per call, warm sandboxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType

from app.graders.config import GraderConfig
from app.graders.engine import build_grader
from app.graders.metrics import batch_metrics
from app.graders.normalize import normalize_grader
from app.graders.result import GradeResult


@dataclass
class BatchGrades:
    results: list[GradeResult]
    rewards: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.rewards = [result.reward for result in self.results]

    def metrics(self, split: str) -> dict:
        """This batch's pieces of an RFT metrics event (reference section 5), keys prefixed by
        `split` ("train" or "valid") so train and valid pieces merge into one event."""
        return batch_metrics(self.results, split)


class BatchGrader:
    """Grades many samples with one grader definition; keeps python sandboxes warm until
    close(). Use as a context manager."""

    def __init__(self, grader: dict, config: GraderConfig) -> None:
        self.definition = normalize_grader(grader)
        self.config = config
        self._grader = build_grader(self.definition, config, warm=True)

    def grade(self, samples: list[dict], items: list[dict]) -> BatchGrades:
        if len(samples) != len(items):
            raise ValueError(f"{len(samples)} samples but {len(items)} items")
        if not samples:
            return BatchGrades([])
        return BatchGrades(self._grader.grade_many(samples, items))

    def close(self) -> None:
        self._grader.close()

    def __enter__(self) -> BatchGrader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
