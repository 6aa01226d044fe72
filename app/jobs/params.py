"""Validation and normalisation of a create request's training parameters.

Every problem raises ParamError naming the field with a dotted path, e.g.
`method.reinforcement.hyperparameters.batch_size`, so the API can answer 400 with that `param`.
Hyperparameters are checked against the table in `hyperparameters`; grader content is checked
by the grader engine, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.jobs.dataset import RESERVED_KEYS
from app.jobs.hyperparameters import (
    WARM_START_HYPERPARAMETERS,
    HyperparameterError,
    check_hyperparameter,
    echo_defaults,
)

MAX_SEED = 2_147_483_647
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
# The suffix goes into the model name (`ft:<base>:<project>:<suffix>:<job>`) and URL paths,
# so colons, slashes and spaces are out.
_SUFFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

METHOD_TYPES = ("supervised", "dpo", "reinforcement")
INTEGRATION_TYPES = ("wandb",)
WANDB_KEYS = ("project", "entity", "name", "tags")
# W&B's own limits: a tag is at most 64 characters; names of projects and entities 128
MAX_WANDB_TAG_CHARS = 64
MAX_WANDB_NAME_CHARS = 128
MAX_WANDB_TAGS = 50
# characters W&B refuses in project and entity names
WANDB_FORBIDDEN_CHARS = ("/", "\\", "#", "?", "%", ":")
RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")


class ParamError(ValueError):
    """A bad request field: `param` is its dotted path, `message` says what is wrong."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class NormalizedMethod:
    """The validated `method`, with hyperparameters filled in for the job's echo."""

    type: str
    hyperparameters: dict[str, Any]
    grader: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    # our extension: a supervised phase on a dataset field before RL ({"field", ...})
    warm_start: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The job object's `method` field."""
        if self.type == "reinforcement":
            body = {
                "grader": self.grader,
                "hyperparameters": dict(self.hyperparameters),
                "response_format": self.response_format,
            }
            if self.warm_start is not None:
                body["warm_start"] = dict(self.warm_start)
        else:
            body = {"hyperparameters": dict(self.hyperparameters)}
        return {"type": self.type, self.type: body}


def normalize_method(
    method: dict[str, Any] | None, hyperparameters: dict[str, Any] | None
) -> NormalizedMethod:
    """Validate `method` and the deprecated top-level `hyperparameters`; no method means SFT.

    Raises ParamError naming the first bad field.
    """
    method_type = _method_type(method)
    body = _method_body(method, method_type)
    if hyperparameters:
        if method_type != "supervised":
            raise ParamError(
                "hyperparameters",
                "The top-level hyperparameters apply to supervised fine-tuning only; "
                f"give them in method.{method_type}.hyperparameters.",
            )
        if body.get("hyperparameters"):
            raise ParamError(
                "hyperparameters",
                "Give hyperparameters either at the top level (deprecated) or in "
                "method.supervised.hyperparameters, not both.",
            )
        return NormalizedMethod(
            "supervised",
            _normalize_hyperparameters(hyperparameters, "supervised", "hyperparameters"),
        )
    path = f"method.{method_type}"
    normalized = _normalize_hyperparameters(
        body.get("hyperparameters"), method_type, f"{path}.hyperparameters"
    )
    if method_type in ("supervised", "dpo"):
        return NormalizedMethod(method_type, normalized)
    return NormalizedMethod(
        "reinforcement",
        normalized,
        grader=_grader(body.get("grader"), f"{path}.grader"),
        response_format=_response_format(body.get("response_format"), f"{path}.response_format"),
        warm_start=_warm_start(body.get("warm_start"), f"{path}.warm_start"),
    )


def _method_type(method: dict[str, Any] | None) -> str:
    if method is None:
        return "supervised"
    if not isinstance(method, dict):
        raise ParamError("method", "method must be an object.")
    method_type = method.get("type")
    if method_type not in METHOD_TYPES or not isinstance(method_type, str):
        raise ParamError(
            "method.type", 'method.type must be one of "supervised", "dpo", "reinforcement".'
        )
    return method_type


def _method_body(method: dict[str, Any] | None, method_type: str) -> dict[str, Any]:
    """The `method.<type>` object, after rejecting keys that belong to no method or another one."""
    if method is None:
        return {}
    for key, value in method.items():
        if key in ("type", method_type):
            continue
        if key in METHOD_TYPES and value is None:
            continue
        if key in METHOD_TYPES:
            raise ParamError(
                f"method.{key}", f"method.{key} was given but method.type is {method_type}."
            )
        raise ParamError(f"method.{key}", f"Unknown parameter method.{key}.")
    body = method.get(method_type)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ParamError(f"method.{method_type}", f"method.{method_type} must be an object.")
    allowed = (
        ("grader", "hyperparameters", "response_format", "warm_start")
        if method_type == "reinforcement"
        else ("hyperparameters",)
    )
    for key in body:
        if key not in allowed:
            path = f"method.{method_type}.{key}"
            raise ParamError(path, f"Unknown parameter {path}.")
    return body


def _normalize_hyperparameters(
    given: dict[str, Any] | None, method_type: str, path: str
) -> dict[str, Any]:
    """OpenAI's names with their echo defaults, then every given value, checked by the table."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ParamError(path, f"{path} must be an object.")
    normalized: dict[str, Any] = echo_defaults(method_type)
    for name, value in given.items():
        try:
            normalized[name] = check_hyperparameter(method_type, name, value)
        except HyperparameterError as error:
            raise ParamError(f"{path}.{name}", error.message) from None
    return normalized


def _grader(grader: Any, path: str) -> dict[str, Any]:
    if grader is None:
        raise ParamError(path, "Reinforcement fine-tuning requires a grader.")
    if not isinstance(grader, dict):
        raise ParamError(path, "The grader must be an object.")
    return grader


def _warm_start(warm_start: Any, path: str) -> dict[str, Any] | None:
    """`{"field": "<dataset key>", "n_epochs"?, "batch_size"?, "learning_rate_multiplier"?}`,
    the last three checked as supervised hyperparameters; None passes (no warm start)."""
    if warm_start is None:
        return None
    if not isinstance(warm_start, dict):
        raise ParamError(path, f'{path} must be an object such as {{"field": "answer"}}.')
    for key in warm_start:
        if key != "field" and key not in WARM_START_HYPERPARAMETERS:
            accepted = ", ".join(("field", *WARM_START_HYPERPARAMETERS))
            raise ParamError(
                f"{path}.{key}", f"Unknown parameter {path}.{key}; accepted: {accepted}."
            )
    field = warm_start.get("field")
    if not isinstance(field, str) or not field or field in RESERVED_KEYS:
        raise ParamError(
            f"{path}.field",
            f"{path}.field must name the key of each training line that holds the answer to "
            'learn first (such as "answer"); "messages" and "tools" are not answers.',
        )
    normalized: dict[str, Any] = {"field": field}
    for name in WARM_START_HYPERPARAMETERS:
        if name in warm_start:
            try:
                normalized[name] = check_hyperparameter("supervised", name, warm_start[name])
            except HyperparameterError as error:
                raise ParamError(f"{path}.{name}", error.message) from None
    return normalized


def _response_format(response_format: Any, path: str) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise ParamError(path, "response_format must be null or an object.")
    if response_format.get("type") not in RESPONSE_FORMAT_TYPES:
        raise ParamError(
            f"{path}.type", 'response_format.type must be "text", "json_object" or "json_schema".'
        )
    if response_format["type"] == "json_schema":
        json_schema = response_format.get("json_schema")
        if not isinstance(json_schema, dict) or not isinstance(json_schema.get("name"), str):
            raise ParamError(
                f"{path}.json_schema",
                'A json_schema response_format needs "json_schema": {"name": ..., "schema": ...}.',
            )
    return response_format


def validate_suffix(suffix: Any) -> str | None:
    """1–64 letters, digits, '-' or '_' (it goes into the model name); None passes."""
    if suffix is None:
        return None
    if not isinstance(suffix, str) or not _SUFFIX_PATTERN.fullmatch(suffix):
        raise ParamError(
            "suffix", "suffix must be 1 to 64 characters of letters, digits, '-' or '_'."
        )
    return suffix


def validate_metadata(metadata: Any) -> dict[str, str] | None:
    """At most 16 string pairs, keys up to 64 characters, values up to 512; None passes."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise ParamError("metadata", "metadata must be an object of string keys and values.")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise ParamError(
            "metadata", f"metadata has {len(metadata)} pairs; at most {MAX_METADATA_PAIRS} allowed."
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or len(key) > MAX_METADATA_KEY_CHARS:
            raise ParamError(
                "metadata",
                f"metadata keys must be strings of at most {MAX_METADATA_KEY_CHARS} "
                f"characters; got {key!r}.",
            )
        if not isinstance(value, str) or len(value) > MAX_METADATA_VALUE_CHARS:
            raise ParamError(
                "metadata",
                f"metadata[{key!r}] must be a string of at most "
                f"{MAX_METADATA_VALUE_CHARS} characters.",
            )
    return dict(metadata)


def validate_seed(seed: Any) -> int | None:
    """An integer from 0 to 2147483647; None passes (the caller generates one)."""
    if seed is None:
        return None
    if type(seed) is not int or not 0 <= seed <= MAX_SEED:
        raise ParamError("seed", f"seed must be an integer from 0 to {MAX_SEED}; got {seed!r}.")
    return seed


def validate_integrations(integrations: Any) -> list[dict[str, Any]] | None:
    """OpenAI's `integrations`: at most one `{"type": "wandb", "wandb": {"project", "entity"?,
    "name"?, "tags"?}}`, normalised for the job's echo; None passes."""
    if integrations is None:
        return None
    if not isinstance(integrations, list):
        raise ParamError("integrations", "integrations must be a list.")
    normalized: list[dict[str, Any]] = []
    for index, integration in enumerate(integrations):
        path = f"integrations[{index}]"
        if not isinstance(integration, dict):
            raise ParamError(path, f"{path} must be an object.")
        kind = integration.get("type")
        if kind not in INTEGRATION_TYPES:
            raise ParamError(
                f"{path}.type",
                f'{path}.type must be "wandb" (the one integration this server offers); '
                f"got {kind!r}.",
            )
        for key in integration:
            if key not in ("type", kind):
                raise ParamError(f"{path}.{key}", f"Unknown parameter {path}.{key}.")
        if any(seen["type"] == kind for seen in normalized):
            raise ParamError(path, f"Only one {kind} integration may be given.")
        normalized.append({"type": kind, kind: _wandb(integration.get(kind), f"{path}.{kind}")})
    return normalized


def _wandb(settings: Any, path: str) -> dict[str, Any]:
    if not isinstance(settings, dict):
        raise ParamError(path, f"{path} must be an object with at least a project.")
    for key in settings:
        if key not in WANDB_KEYS:
            raise ParamError(f"{path}.{key}", f"Unknown parameter {path}.{key}.")
    project = settings.get("project")
    if not isinstance(project, str) or not project.strip():
        raise ParamError(f"{path}.project", f"{path}.project must be a non-empty string.")
    wandb: dict[str, Any] = {"project": project}
    for key in ("entity", "name"):
        value = settings.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ParamError(f"{path}.{key}", f"{path}.{key} must be null or a non-empty string.")
        wandb[key] = value
    for key in ("project", "entity"):
        value = wandb[key]
        if value is not None and (
            len(value) > MAX_WANDB_NAME_CHARS or any(c in value for c in WANDB_FORBIDDEN_CHARS)
        ):
            raise ParamError(
                f"{path}.{key}",
                f"{path}.{key} must be at most {MAX_WANDB_NAME_CHARS} characters, none of "
                f"{' '.join(WANDB_FORBIDDEN_CHARS)}.",
            )
    tags = settings.get("tags")
    if tags is None:
        tags = []
    if (
        not isinstance(tags, list)
        or len(tags) > MAX_WANDB_TAGS
        or not all(isinstance(tag, str) and 0 < len(tag) <= MAX_WANDB_TAG_CHARS for tag in tags)
    ):
        raise ParamError(
            f"{path}.tags",
            f"{path}.tags must be a list of at most {MAX_WANDB_TAGS} strings of 1 to "
            f"{MAX_WANDB_TAG_CHARS} characters.",
        )
    wandb["tags"] = list(tags)
    return wandb
