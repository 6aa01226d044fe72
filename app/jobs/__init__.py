"""Job domain: the state machine, dataset validation, create-request parameters and the
hyperparameter table."""

from app.jobs.dataset import (
    DatasetError,
    DatasetReport,
    default_example_limits,
    item_fields,
    iter_examples,
    validate_dataset,
)
from app.jobs.hyperparameters import (
    HyperparameterError,
    Hyperparameters,
    accepted_hyperparameters,
    resolve_hyperparameters,
)
from app.jobs.params import (
    NormalizedMethod,
    ParamError,
    normalize_method,
    validate_integrations,
    validate_metadata,
    validate_seed,
    validate_suffix,
)
from app.jobs.states import (
    CREATED_MESSAGE,
    TERMINAL_STATUSES,
    IllegalTransition,
    JobStatus,
    UserAction,
    UserActionOutcome,
    advance,
    allowed_user_actions,
    apply_user_action,
    can_advance,
    event_level,
    transition_message,
    validating_file_message,
)

__all__ = [
    "CREATED_MESSAGE",
    "TERMINAL_STATUSES",
    "DatasetError",
    "DatasetReport",
    "HyperparameterError",
    "Hyperparameters",
    "IllegalTransition",
    "JobStatus",
    "NormalizedMethod",
    "ParamError",
    "UserAction",
    "UserActionOutcome",
    "accepted_hyperparameters",
    "advance",
    "allowed_user_actions",
    "apply_user_action",
    "can_advance",
    "default_example_limits",
    "event_level",
    "item_fields",
    "iter_examples",
    "normalize_method",
    "resolve_hyperparameters",
    "transition_message",
    "validate_dataset",
    "validate_integrations",
    "validate_metadata",
    "validate_seed",
    "validate_suffix",
    "validating_file_message",
]
