"""multi: several named sub-graders combined by the `calculate_output` formula."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.graders.base import Grader
from app.graders.config import GraderConfig
from app.graders.errors import merge_errors
from app.graders.formula import Formula, FormulaError, FormulaEvaluationError, parse_formula
from app.graders.result import GradeResult, add_usage

# Sub-graders that wait on a process or the network; run them side by side.
WAITING_TYPES = frozenset({"python", "score_model", "label_model"})


class MultiGrader(Grader):
    def __init__(
        self,
        definition: dict,
        config: GraderConfig,
        build: Callable[[dict, GraderConfig], Grader],
    ) -> None:
        super().__init__(definition, config)
        self.sub_graders: dict[str, Grader] = {}
        for key, sub_definition in definition["graders"].items():
            self.sub_graders[key] = build({**sub_definition, "name": key}, config)
        self.formula: Formula | None = None
        self.formula_error: str | None = None
        try:
            self.formula = parse_formula(definition["calculate_output"])
            unknown = self.formula.names - set(self.sub_graders)
            if unknown:
                raise FormulaError(f"unknown grader names {sorted(unknown)}")
        except FormulaError as exc:
            self.formula, self.formula_error = None, str(exc)

    def grade_many(self, samples: list[dict], items: list[dict]) -> list[GradeResult]:
        sub_results = self._grade_sub_graders(samples, items)
        return [
            self._combine({key: results[index] for key, results in sub_results.items()})
            for index in range(len(samples))
        ]

    def close(self) -> None:
        for grader in self.sub_graders.values():
            grader.close()

    def _grade_sub_graders(
        self, samples: list[dict], items: list[dict]
    ) -> dict[str, list[GradeResult]]:
        waiting = [key for key, grader in self.sub_graders.items() if grader.type in WAITING_TYPES]
        if len(waiting) < 2:
            return {
                key: grader.grade_many(samples, items) for key, grader in self.sub_graders.items()
            }
        with ThreadPoolExecutor(max_workers=len(self.sub_graders)) as executor:
            futures = {
                key: executor.submit(grader.grade_many, samples, items)
                for key, grader in self.sub_graders.items()
            }
            return {key: future.result() for key, future in futures.items()}

    def _combine(self, sub_results: dict[str, GradeResult]) -> GradeResult:
        result = self.new_result()
        result.sub_results = sub_results
        for key, sub_result in sub_results.items():
            result.sub_rewards[key] = sub_result.reward
            result.execution_time += sub_result.execution_time
            merge_errors(result.errors, sub_result.errors)
            result.token_usage = add_usage(result.token_usage, sub_result.token_usage)
            for model, usage in sub_result.token_usage_per_model.items():
                result.token_usage_per_model[model] = (
                    add_usage(result.token_usage_per_model.get(model), usage) or {}
                )
            result.sampled_model_name = result.sampled_model_name or sub_result.sampled_model_name
        result.scores = dict(result.sub_rewards)
        if self.formula is None:
            result.errors["formula_parse_error"] = True
            return result
        try:
            result.reward = self.formula.evaluate(result.sub_rewards)
        except FormulaEvaluationError:
            result.errors["other_error"] = True
        return result
