import pytest

from app.jobs import (
    NormalizedMethod,
    ParamError,
    normalize_method,
    validate_metadata,
    validate_seed,
    validate_suffix,
)
from app.jobs.hyperparameters import TABLE

GRADER = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}
RFT_PATH = "method.reinforcement.hyperparameters"


def rft(hyperparameters=None, **extra) -> dict:
    body = {"grader": GRADER, **extra}
    if hyperparameters is not None:
        body["hyperparameters"] = hyperparameters
    return {"type": "reinforcement", "reinforcement": body}


def param_error(method, hyperparameters=None) -> ParamError:
    with pytest.raises(ParamError) as caught:
        normalize_method(method, hyperparameters)
    return caught.value


def test_no_method_is_supervised_with_auto_hyperparameters():
    normalized = normalize_method(None, None)
    assert normalized.type == "supervised"
    assert normalized.as_dict() == {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {
                "batch_size": "auto",
                "learning_rate_multiplier": "auto",
                "n_epochs": "auto",
            }
        },
    }


def test_deprecated_top_level_hyperparameters_apply_to_supervised():
    normalized = normalize_method(None, {"n_epochs": 3})
    assert normalized.hyperparameters["n_epochs"] == 3
    normalized = normalize_method({"type": "supervised"}, {"batch_size": 8})
    assert normalized.hyperparameters["batch_size"] == 8


def test_top_level_and_method_hyperparameters_together_are_rejected():
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    error = param_error(method, {"n_epochs": 3})
    assert error.param == "hyperparameters"
    assert "not both" in error.message


def test_top_level_hyperparameters_with_reinforcement_are_rejected():
    error = param_error(rft(), {"n_epochs": 3})
    assert error.param == "hyperparameters"
    assert "method.reinforcement.hyperparameters" in error.message


def test_top_level_error_names_the_top_level_path():
    assert param_error(None, {"n_epochs": 0}).param == "hyperparameters.n_epochs"
    assert param_error(None, {"group_size": 2}).param == "hyperparameters.group_size"


def test_reinforcement_echo_shape_and_defaults():
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {}}}
    normalized = normalize_method(
        rft({"reasoning_effort": "medium"}, response_format=response_format), None
    )
    assert isinstance(normalized, NormalizedMethod)
    assert normalized.type == "reinforcement"
    assert normalized.as_dict() == {
        "type": "reinforcement",
        "reinforcement": {
            "grader": GRADER,
            "hyperparameters": {
                "batch_size": "auto",
                "learning_rate_multiplier": "auto",
                "n_epochs": "auto",
                "compute_multiplier": "auto",
                "eval_interval": "auto",
                "eval_samples": "auto",
                "reasoning_effort": "medium",
            },
            "response_format": response_format,
        },
    }


def test_reinforcement_without_response_format_echoes_null():
    assert normalize_method(rft(), None).as_dict()["reinforcement"]["response_format"] is None
    assert normalize_method(rft(), None).hyperparameters["reasoning_effort"] == "default"


@pytest.mark.parametrize(
    ("method", "param"),
    [
        ("reinforcement", "method"),
        ({}, "method.type"),
        ({"type": "rlhf"}, "method.type"),
        ({"type": 3}, "method.type"),
        ({"type": "supervised", "supervised": []}, "method.supervised"),
        ({"type": "supervised", "reinforcement": {"grader": GRADER}}, "method.reinforcement"),
        ({"type": "supervised", "extra": 1}, "method.extra"),
        ({"type": "supervised", "supervised": {"grader": GRADER}}, "method.supervised.grader"),
        (
            {"type": "supervised", "supervised": {"hyperparameters": 5}},
            "method.supervised.hyperparameters",
        ),
        ({"type": "reinforcement"}, "method.reinforcement.grader"),
        (
            {"type": "reinforcement", "reinforcement": {"grader": "exact"}},
            "method.reinforcement.grader",
        ),
        (rft(tools=[]), "method.reinforcement.tools"),
    ],
)
def test_bad_method_shape(method, param):
    assert param_error(method).param == param


def test_other_method_keys_set_to_null_are_ignored():
    normalized = normalize_method({"type": "supervised", "dpo": None, "reinforcement": None}, None)
    assert normalized.type == "supervised"


def test_dpo_echoes_openai_hyperparameters_with_beta():
    normalized = normalize_method({"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}, None)
    assert normalized.as_dict() == {
        "type": "dpo",
        "dpo": {
            "hyperparameters": {
                "batch_size": "auto",
                "learning_rate_multiplier": "auto",
                "n_epochs": "auto",
                "beta": 0.2,
            }
        },
    }
    assert normalize_method({"type": "dpo"}, None).hyperparameters["beta"] == "auto"


@pytest.mark.parametrize(
    ("method", "param"),
    [
        (
            {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}},
            "method.dpo.hyperparameters.beta",
        ),
        (
            {"type": "dpo", "dpo": {"hyperparameters": {"beta": 2.5}}},
            "method.dpo.hyperparameters.beta",
        ),
        (
            {"type": "dpo", "dpo": {"hyperparameters": {"group_size": 4}}},
            "method.dpo.hyperparameters.group_size",
        ),
        ({"type": "dpo", "dpo": {"grader": GRADER}}, "method.dpo.grader"),
        ({"type": "dpo", "supervised": {}}, "method.supervised"),
    ],
)
def test_bad_dpo_method(method, param):
    assert param_error(method).param == param


def test_dpo_takes_no_top_level_hyperparameters():
    error = param_error({"type": "dpo"}, {"n_epochs": 2})
    assert error.param == "hyperparameters"


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("n_epochs", [1, 50, "auto", 3.0], [0, 51, 2.5, True, "3", None]),
        ("batch_size", [1, 256], [0, 257, False]),
        (
            "learning_rate_multiplier",
            [0.01, 5, 100],
            [0, -1, 100.5, 1e6, float("inf"), float("nan"), True],
        ),
        ("compute_multiplier", [0.00002, 10], [0.00001, 0, 10.5]),
        ("eval_interval", [1, 1000, 10_000], [0, -3, 10_001]),
        ("eval_samples", [1, 64], [0, 65]),
        ("reasoning_effort", ["default", "low", "medium", "high"], ["auto", "max", 1]),
        ("group_size", [2, 64, "auto"], [1, 65]),
        ("lora_rank", [1, 256], [0, 257]),
        ("lora_alpha", [0.5, 32, 1024], [0, -1, 1024.5]),
        ("loss_type", ["dapo", "grpo", "dr_grpo"], ["ppo", "auto"]),
        ("beta", [0, 0.04, 10], [-0.1, 10.5]),
        ("temperature", [0.1, 2], [0, 2.1]),
        ("top_p", [0.5, 1], [0, 1.1]),
        ("max_completion_tokens", [1, 4096], [0, 4097]),
        ("scale_rewards", ["group", "batch", "none"], ["all", None]),
        ("num_iterations", [1, 16], [0, 17]),
        ("epsilon", [0.2, 1], [0, 1.5]),
        ("epsilon_high", [0.28, 1], [0, 1.5]),
        ("sampling_rounds", [1, 16], [0, 17, 2.5]),
    ],
)
def test_reinforcement_hyperparameter_ranges(name, good, bad):
    for value in good:
        normalized = normalize_method(rft({name: value}), None).hyperparameters[name]
        assert normalized == value
    for value in bad:
        error = param_error(rft({name: value}))
        assert error.param == f"{RFT_PATH}.{name}", value
        assert name in error.message


def test_integral_float_is_normalised_to_int():
    assert (
        type(normalize_method(rft({"batch_size": 8.0}), None).hyperparameters["batch_size"]) is int
    )


def test_message_says_what_is_expected_and_what_was_given():
    error = param_error(rft({"batch_size": 0}))
    assert error.message == 'batch_size must be "auto" or an integer from 1 to 256; got 0.'


def test_unknown_hyperparameter_is_rejected():
    error = param_error(rft({"warmup": 10}))
    assert error.param == f"{RFT_PATH}.warmup"
    assert "Unknown hyperparameter" in error.message


@pytest.mark.parametrize(
    "name",
    [
        "compute_multiplier",
        "eval_samples",
        "reasoning_effort",
        "group_size",
        "beta",
        "loss_type",
    ],
)
def test_reinforcement_only_names_are_rejected_on_supervised(name):
    method = {"type": "supervised", "supervised": {"hyperparameters": {name: 1}}}
    error = param_error(method)
    assert error.param == f"method.supervised.hyperparameters.{name}"
    assert "reinforcement fine-tuning only" in error.message


def test_supervised_accepts_lora_knobs():
    method = {"type": "supervised", "supervised": {"hyperparameters": {"lora_rank": 16}}}
    assert normalize_method(method, None).hyperparameters["lora_rank"] == 16


def test_supervised_knobs_are_echoed_only_when_given():
    given = {"eval_interval": 5}
    method = {"type": "supervised", "supervised": {"hyperparameters": given}}
    assert normalize_method(method, None).hyperparameters == {
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
        "n_epochs": "auto",
        "eval_interval": 5,
    }


def test_supervised_refuses_the_sampling_budget_it_would_not_use():
    method = {"type": "supervised", "supervised": {"hyperparameters": {"max_completion_tokens": 8}}}
    with pytest.raises(ParamError) as raised:
        normalize_method(method, None)
    assert raised.value.param == "method.supervised.hyperparameters.max_completion_tokens"


@pytest.mark.parametrize(
    ("method", "row"),
    [(method, row) for row in TABLE if row.kind != "choice" for method in sorted(row.methods)],
    ids=lambda value: getattr(value, "name", value),
)
def test_every_number_has_an_upper_bound_the_api_enforces(method, row):
    path = f"method.{method}.hyperparameters"
    body = {"grader": GRADER} if method == "reinforcement" else {}
    for value, accepted in ((row.high, True), (row.high + 1, False)):
        body["hyperparameters"] = {row.name: value}
        request = {"type": method, method: body}
        if accepted:
            assert normalize_method(request, None).hyperparameters[row.name] == value
            continue
        error = param_error(request)
        assert error.param == f"{path}.{row.name}"
        assert f"at most {row.high:g}" in error.message or f"to {row.high:g}" in error.message


@pytest.mark.parametrize("response_format", [{"type": "text"}, {"type": "json_object"}])
def test_response_format_accepted(response_format):
    normalized = normalize_method(rft(response_format=response_format), None)
    assert normalized.response_format == response_format


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ("json", "method.reinforcement.response_format"),
        ({"type": "xml"}, "method.reinforcement.response_format.type"),
        ({"type": "json_schema"}, "method.reinforcement.response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"schema": {}}},
            "method.reinforcement.response_format.json_schema",
        ),
    ],
)
def test_bad_response_format(response_format, param):
    assert param_error(rft(response_format=response_format)).param == param


@pytest.mark.parametrize("suffix", ["my-model", "a", "A_1", "x" * 64, None])
def test_good_suffix(suffix):
    assert validate_suffix(suffix) == suffix


@pytest.mark.parametrize("suffix", ["", "x" * 65, "a:b", "a/b", "a b", "é", 5])
def test_bad_suffix(suffix):
    with pytest.raises(ParamError) as caught:
        validate_suffix(suffix)
    assert caught.value.param == "suffix"


def test_good_metadata():
    metadata = {f"k{index}": "v" * 512 for index in range(16)}
    metadata["k" * 64] = metadata.pop("k0")
    assert validate_metadata(metadata) == metadata
    assert validate_metadata(None) is None


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{index}": "v" for index in range(17)},
        {"k" * 65: "v"},
        {"k": "v" * 513},
        {"k": 1},
        {"k": None},
        ["k", "v"],
    ],
)
def test_bad_metadata(metadata):
    with pytest.raises(ParamError) as caught:
        validate_metadata(metadata)
    assert caught.value.param == "metadata"


@pytest.mark.parametrize("seed", [0, 42, 2_147_483_647, None])
def test_good_seed(seed):
    assert validate_seed(seed) == seed


@pytest.mark.parametrize("seed", [-1, 2_147_483_648, 1.5, True, "42"])
def test_bad_seed(seed):
    with pytest.raises(ParamError) as caught:
        validate_seed(seed)
    assert caught.value.param == "seed"


WARM_PATH = "method.reinforcement.warm_start"


def test_warm_start_is_echoed_as_given():
    warm = {"field": "answer", "n_epochs": 2, "learning_rate_multiplier": "auto"}
    normalized = normalize_method(rft(warm_start=warm), None)
    assert normalized.warm_start == warm
    assert normalized.as_dict()["reinforcement"]["warm_start"] == warm
    # off by default, and absent from the echo then
    assert "warm_start" not in normalize_method(rft(), None).as_dict()["reinforcement"]


@pytest.mark.parametrize(
    ("warm", "param", "words"),
    [
        ({"field": "answer", "steps": 4}, f"{WARM_PATH}.steps", "Unknown parameter"),
        ({"n_epochs": 2}, f"{WARM_PATH}.field", "must name the key"),
        ({"field": "messages"}, f"{WARM_PATH}.field", "not answers"),
        ({"field": 3}, f"{WARM_PATH}.field", "must name the key"),
        ({"field": "answer", "n_epochs": 0}, f"{WARM_PATH}.n_epochs", "n_epochs must be"),
        ("answer", WARM_PATH, "must be an object"),
    ],
)
def test_bad_warm_start_names_the_field(warm, param, words):
    error = param_error(rft(warm_start=warm))
    assert error.param == param
    assert words in error.message
