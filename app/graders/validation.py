"""validate_grader: every check on a grader definition, each error with a JSON path."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

from app.graders.formula import FormulaError, parse_formula
from app.graders.normalize import wrap_sub_graders
from app.graders.similarity import METRICS
from app.graders.string_check import OPERATION_ALIASES, OPERATIONS
from app.graders.templates import check_template

TOP_LEVEL_TYPES = ("string_check", "text_similarity", "python", "score_model", "multi")
SUB_GRADER_TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model")
ROLES = ("user", "assistant", "system", "developer")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
DEFAULT_MAX_SOURCE_BYTES = 256 * 1024
# sub-graders of one multi grader: each may hold sandboxes or model calls per sample
MAX_SUB_GRADERS = 32
_COMMON_FIELDS = {"type", "name"}
ALLOWED_FIELDS = {
    "string_check": _COMMON_FIELDS | {"input", "reference", "operation"},
    "text_similarity": _COMMON_FIELDS
    | {"input", "reference", "evaluation_metric", "pass_threshold"},
    "python": _COMMON_FIELDS | {"source", "image_tag", "pass_threshold"},
    "score_model": _COMMON_FIELDS
    | {"model", "input", "range", "sampling_params", "pass_threshold"},
    "label_model": _COMMON_FIELDS | {"model", "input", "labels", "passing_labels"},
    "multi": _COMMON_FIELDS | {"graders", "calculate_output"},
}


@dataclass(frozen=True)
class GraderValidationError:
    path: str  # JSON path of the bad field, e.g. grader.graders.exact.operation
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class _Checker:
    def __init__(self, max_source_bytes: int) -> None:
        self.max_source_bytes = max_source_bytes
        self.errors: list[GraderValidationError] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(GraderValidationError(path, message))

    def string(self, grader: dict, key: str, path: str, *, required: bool = True) -> str | None:
        value = grader.get(key)
        if value is None:
            if required:
                self.fail(f"{path}.{key}", f"'{key}' is required")
            return None
        if not isinstance(value, str):
            self.fail(f"{path}.{key}", f"'{key}' must be a string")
            return None
        return value

    def template(self, value: object, path: str) -> None:
        if isinstance(value, str):
            for problem in check_template(value):
                self.fail(path, problem)

    def grader(self, grader: object, path: str, *, inside_multi: bool) -> None:
        if not isinstance(grader, dict):
            self.fail(path, "a grader must be an object")
            return
        kind = grader.get("type")
        allowed = SUB_GRADER_TYPES if inside_multi else TOP_LEVEL_TYPES
        if kind not in allowed:
            self.fail(f"{path}.type", _type_message(kind, inside_multi))
            return
        self.string(grader, "name", path, required=False)
        for key in sorted(set(grader) - ALLOWED_FIELDS[kind]):
            self.fail(f"{path}.{key}", f"unknown field '{key}' for a {kind} grader")
        getattr(self, kind)(grader, path)

    def string_check(self, grader: dict, path: str) -> None:
        self._compared_templates(grader, path)
        operation = self.string(grader, "operation", path)
        known = (*OPERATIONS, *OPERATION_ALIASES)
        if operation is not None and operation not in known:
            self.fail(f"{path}.operation", f"'operation' must be one of {', '.join(known)}")

    def text_similarity(self, grader: dict, path: str) -> None:
        self._compared_templates(grader, path)
        metric = self.string(grader, "evaluation_metric", path)
        if metric is not None and metric not in METRICS:
            self.fail(
                f"{path}.evaluation_metric",
                f"'evaluation_metric' must be one of {', '.join(METRICS)}",
            )
        self._pass_threshold(grader, path)

    def _compared_templates(self, grader: dict, path: str) -> None:
        for key in ("input", "reference"):
            self.template(self.string(grader, key, path), f"{path}.{key}")

    def _pass_threshold(self, grader: dict, path: str) -> None:
        threshold = grader.get("pass_threshold")
        if threshold is not None and not _is_number(threshold):
            self.fail(f"{path}.pass_threshold", "'pass_threshold' must be a number")

    def python(self, grader: dict, path: str) -> None:
        self.string(grader, "image_tag", path, required=False)
        self._pass_threshold(grader, path)
        source = self.string(grader, "source", path)
        if source is None:
            return
        problem = python_source_problem(source, self.max_source_bytes)
        if problem:
            self.fail(f"{path}.source", problem)

    def score_model(self, grader: dict, path: str) -> None:
        self._model_and_input(grader, path)
        self._pass_threshold(grader, path)
        score_range = grader.get("range")
        if score_range is not None and not (
            isinstance(score_range, list)
            and len(score_range) == 2
            and all(_is_number(bound) for bound in score_range)
            and score_range[0] < score_range[1]
        ):
            self.fail(f"{path}.range", "'range' must be [min, max] with min < max")
        self._sampling_params(grader.get("sampling_params"), f"{path}.sampling_params")

    def label_model(self, grader: dict, path: str) -> None:
        self._model_and_input(grader, path)
        labels = self._labels(grader, "labels", path)
        passing = self._labels(grader, "passing_labels", path)
        if labels is not None and passing is not None:
            for index, label in enumerate(passing):
                if label not in labels:
                    self.fail(f"{path}.passing_labels[{index}]", f"'{label}' is not in 'labels'")

    def _labels(self, grader: dict, key: str, path: str) -> list[str] | None:
        labels = grader.get(key)
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
            self.fail(f"{path}.{key}", f"'{key}' must be a non-empty list of strings")
            return None
        return labels

    def _model_and_input(self, grader: dict, path: str) -> None:
        model = self.string(grader, "model", path)
        if model is not None and not model.strip():
            self.fail(f"{path}.model", "'model' must not be empty")
        messages = grader.get("input")
        if not isinstance(messages, list) or not messages:
            self.fail(f"{path}.input", "'input' must be a non-empty list of messages")
            return
        for index, message in enumerate(messages):
            self._message(message, f"{path}.input[{index}]")

    def _message(self, message: object, path: str) -> None:
        if not isinstance(message, dict):
            self.fail(path, "a message must be an object")
            return
        if message.get("role") not in ROLES:
            self.fail(f"{path}.role", f"'role' must be one of {', '.join(ROLES)}")
        if message.get("type", "message") != "message":
            self.fail(f"{path}.type", "'type' must be 'message'")
        content = message.get("content")
        if isinstance(content, list):
            if not content:
                self.fail(f"{path}.content", "'content' must not be an empty list")
            for index, part in enumerate(content):
                self._content(part, f"{path}.content[{index}]")
        else:
            self._content(content, f"{path}.content")

    def _content(self, part: object, path: str) -> None:
        if isinstance(part, str):
            self.template(part, path)
            return
        if not isinstance(part, dict):
            self.fail(path, "content must be a string or a content object")
            return
        kind = part.get("type")
        required = {
            "input_text": "text",
            "output_text": "text",
            "input_image": "image_url",
            "input_audio": "input_audio",
        }
        if kind not in required:
            self.fail(f"{path}.type", f"content 'type' must be one of {', '.join(required)}")
            return
        field = required[kind]
        if field not in part:
            self.fail(f"{path}.{field}", f"'{field}' is required")
        self._strings_in(part, path)

    def _strings_in(self, value: object, path: str) -> None:
        if isinstance(value, str):
            self.template(value, path)
        elif isinstance(value, dict):
            for key, inner in value.items():
                self._strings_in(inner, f"{path}.{key}")

    def _sampling_params(self, params: object, path: str) -> None:
        if params is None:
            return
        if not isinstance(params, dict):
            self.fail(path, "'sampling_params' must be an object")
            return
        for key in ("top_p", "temperature"):
            if params.get(key) is not None and not _is_number(params[key]):
                self.fail(f"{path}.{key}", f"'{key}' must be a number")
        for key, least, most in (("seed", 0, 2**63 - 1), ("max_completions_tokens", 1, None)):
            value = params.get(key)
            in_range = _is_int(value) and value >= least and (most is None or value <= most)
            if value is not None and not in_range:
                bounds = f"from {least} to {most}" if most is not None else f">= {least}"
                self.fail(f"{path}.{key}", f"'{key}' must be an integer {bounds}")
        effort = params.get("reasoning_effort")
        if effort is not None and effort not in REASONING_EFFORTS:
            self.fail(
                f"{path}.reasoning_effort",
                f"'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}",
            )

    def multi(self, grader: dict, path: str) -> None:
        graders = wrap_sub_graders(grader.get("graders"))
        if not isinstance(graders, dict) or not graders:
            self.fail(f"{path}.graders", "'graders' must be a non-empty map of name to grader")
            graders = {}
        if len(graders) > MAX_SUB_GRADERS:
            self.fail(
                f"{path}.graders",
                f"a multi grader has at most {MAX_SUB_GRADERS} sub-graders, not {len(graders)}",
            )
            return
        for key, sub_grader in graders.items():
            sub_path = f"{path}.graders.{key}"
            if isinstance(sub_grader, dict) and sub_grader.get("type") == "multi":
                self.fail(f"{sub_path}.type", "a multi grader cannot contain another multi grader")
                continue
            self.grader(sub_grader, sub_path, inside_multi=True)
        formula = self.string(grader, "calculate_output", path)
        if formula is None:
            return
        try:
            unknown = parse_formula(formula).names - set(graders)
        except FormulaError as exc:
            self.fail(f"{path}.calculate_output", f"cannot parse the formula: {exc}")
            return
        for name in sorted(unknown):
            self.fail(f"{path}.calculate_output", f"'{name}' is not the name of a sub-grader")


def _type_message(kind: object, inside_multi: bool) -> str:
    if kind == "label_model":
        return "a label_model grader is only allowed inside a multi grader"
    if kind == "multi" and inside_multi:
        return "a multi grader cannot contain another multi grader"
    allowed = SUB_GRADER_TYPES if inside_multi else TOP_LEVEL_TYPES
    return f"'type' must be one of {', '.join(allowed)}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def python_source_problem(source: str, max_source_bytes: int) -> str | None:
    """Why a python grader's source is unusable, or None: size, syntax, and `grade(a, b)`."""
    size = len(source.encode())
    if size > max_source_bytes:
        return f"'source' is {size} bytes; the limit is {max_source_bytes}"
    try:
        module = ast.parse(source, "<grader>")
        compile(module, "<grader>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"'source' does not compile: {exc}"
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "grade":
            arguments = node.args
            positional = len(arguments.posonlyargs) + len(arguments.args)
            if positional != 2 or arguments.vararg or arguments.kwonlyargs:
                return "'grade' must take exactly two arguments: grade(sample, item)"
            return None
    return "'source' must define a top-level function grade(sample, item)"


def validate_grader(
    grader: object, *, path: str = "grader", max_source_bytes: int | None = None
) -> list[GraderValidationError]:
    """Every problem with a grader definition, each with the JSON path of the bad field;
    [] when it is valid. Top-level rules: label_model only inside multi, no multi in multi."""
    checker = _Checker(max_source_bytes or DEFAULT_MAX_SOURCE_BYTES)
    checker.grader(grader, path, inside_multi=False)
    return checker.errors
