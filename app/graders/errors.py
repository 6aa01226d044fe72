"""The fourteen per-sample error flags of a grader run, and the exception that sets one."""

from __future__ import annotations

# Boolean flags, in the order the reference's /run response lists them.
BOOLEAN_FLAGS: tuple[str, ...] = (
    "formula_parse_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
    "invalid_variable_error",
    "other_error",
    "python_grader_server_error",
    "python_grader_runtime_error",
    "model_grader_server_error",
    "model_grader_refusal_error",
    "model_grader_parse_error",
)
# String-or-null companions of some flags.
DETAIL_FIELDS: tuple[str, ...] = (
    "python_grader_server_error_type",
    "python_grader_runtime_error_details",
    "model_grader_server_error_details",
)
DETAIL_OF_FLAG: dict[str, str] = {
    "python_grader_server_error": "python_grader_server_error_type",
    "python_grader_runtime_error": "python_grader_runtime_error_details",
    "model_grader_server_error": "model_grader_server_error_details",
}


def empty_errors() -> dict[str, bool | str | None]:
    """All fourteen error fields, unset."""
    errors: dict[str, bool | str | None] = dict.fromkeys(BOOLEAN_FLAGS, False)
    errors.update(dict.fromkeys(DETAIL_FIELDS))
    return errors


def merge_errors(target: dict, source: dict) -> None:
    """OR the flags of `source` into `target`; keep the first detail seen."""
    for flag in BOOLEAN_FLAGS:
        target[flag] = bool(target[flag] or source.get(flag))
    for field in DETAIL_FIELDS:
        if target[field] is None and source.get(field) is not None:
            target[field] = source[field]


class GraderError(Exception):
    """A per-sample failure: the sample scores 0 and `flag` is raised in its errors."""

    def __init__(self, flag: str, details: str | None = None) -> None:
        super().__init__(details or flag)
        if flag not in BOOLEAN_FLAGS:
            raise ValueError(f"unknown error flag {flag!r}")
        self.flag = flag
        self.details = details

    def apply(self, errors: dict) -> None:
        errors[self.flag] = True
        detail_field = DETAIL_OF_FLAG.get(self.flag)
        if detail_field is not None and self.details is not None:
            errors[detail_field] = self.details
