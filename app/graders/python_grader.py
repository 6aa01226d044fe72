"""python graders: the user's grade(sample, item) run in sandboxed worker processes."""

from __future__ import annotations

from app.graders.base import Grader
from app.graders.config import GraderConfig
from app.graders.result import GradeResult
from app.graders.sandbox_pool import Outcome, SandboxPool
from app.graders.sandbox_slots import SandboxSlots
from app.graders.validation import python_source_problem


class PythonGrader(Grader):
    """With `warm`, the pool of sandboxes lives until close(); otherwise each call starts
    and ends its own."""

    def __init__(
        self, definition: dict, config: GraderConfig, *, warm: bool, slots: SandboxSlots
    ) -> None:
        super().__init__(definition, config)
        self.slots = slots
        self.source: str = definition["source"]
        self.source_problem = python_source_problem(self.source, config.max_source_bytes)
        self.warm = warm
        self._pool: SandboxPool | None = None

    def grade_many(self, samples: list[dict], items: list[dict]) -> list[GradeResult]:
        if self.source_problem is not None:
            return [self._result(Outcome(runtime_error=self.source_problem)) for _ in samples]
        pairs = list(zip(samples, items, strict=True))
        if self.warm:
            if self._pool is None:
                self._pool = SandboxPool(self.source, self.config, grader_slots=self.slots)
            outcomes = self._pool.grade(pairs)
        else:
            pool = SandboxPool(
                self.source, self.config, size=min(len(pairs), 1), grader_slots=self.slots
            )
            try:
                outcomes = pool.grade(pairs)
            finally:
                pool.close()
        return [self._result(outcome) for outcome in outcomes]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _result(self, outcome: Outcome) -> GradeResult:
        result = self.new_result()
        result.execution_time = outcome.seconds
        if outcome.runtime_error is not None:
            result.errors["python_grader_runtime_error"] = True
            result.errors["python_grader_runtime_error_details"] = outcome.runtime_error
            result.errors["unresponsive_reward_error"] = outcome.timed_out
        elif outcome.server_error is not None:
            result.errors["python_grader_server_error"] = True
            result.errors["python_grader_server_error_type"] = outcome.server_error
        else:
            result.reward = outcome.reward
        return result
