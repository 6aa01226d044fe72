import json

import pytest

from app.jobs import (
    DatasetReport,
    default_example_limits,
    item_fields,
    iter_examples,
    validate_dataset,
)

RFT_EXAMPLE = {
    "messages": [
        {"role": "developer", "content": "Answer with a number."},
        {"role": "user", "content": "2 + 2?"},
    ],
    "reference_answer": 4,
}
SFT_EXAMPLE = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "2 + 2?"},
        {"role": "assistant", "content": "4"},
    ]
}


def jsonl(*examples: object) -> list[bytes]:
    """File lines as a binary file yields them: newline-terminated bytes."""
    return [
        (example if isinstance(example, str) else json.dumps(example)).encode() + b"\n"
        for example in examples
    ]


def rft_file_with(bad: object, *, good_before: int = 2, good_after: int = 10) -> list[bytes]:
    return jsonl(*[RFT_EXAMPLE] * good_before, bad, *[RFT_EXAMPLE] * good_after)


def check_rft(lines: list[bytes], role: str = "training_file") -> DatasetReport:
    return validate_dataset(lines, method="reinforcement", role=role)


def assert_line_error(report: DatasetReport, line_number: int, fragment: str) -> None:
    assert report.error is not None
    assert report.error.message.startswith(f"Line {line_number}: ")
    assert fragment in report.error.message


def test_valid_reinforcement_file():
    report = check_rft(jsonl(*[RFT_EXAMPLE] * 10))
    assert report.ok and report.error is None
    assert report.example_count == 10


def test_error_carries_code_and_param_per_role():
    report = check_rft(jsonl("not json"), role="validation_file")
    assert report.error.as_dict() == {
        "code": "invalid_validation_file",
        "message": report.error.message,
        "param": "validation_file",
    }
    assert check_rft(jsonl("not json")).error.code == "invalid_training_file"


def test_invalid_json_names_the_line():
    report = check_rft(rft_file_with('{"messages": [}'))
    assert_line_error(report, 3, "invalid JSON")
    assert report.example_count == 2


def test_nan_is_not_json():
    assert_line_error(check_rft(rft_file_with('{"messages": [], "x": NaN}')), 3, "NaN")


def test_invalid_utf8_names_the_line():
    lines = jsonl(RFT_EXAMPLE, RFT_EXAMPLE)
    lines.insert(1, b'{"messages": "\xff"}\n')
    assert_line_error(check_rft(lines), 2, "not valid UTF-8")


def test_byte_order_mark_on_the_first_line_is_accepted():
    lines = jsonl(*[RFT_EXAMPLE] * 10)
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    assert check_rft(lines).ok


def test_line_must_be_an_object():
    assert_line_error(check_rft(rft_file_with("[1, 2]")), 3, "expected a JSON object, got an array")


def test_blank_lines_are_skipped_but_counted():
    lines = [b"\n", b"   \r\n", *jsonl(*[RFT_EXAMPLE] * 10), b"\n", b"oops\n"]
    report = check_rft(lines)
    assert_line_error(report, 14, "invalid JSON")
    assert report.example_count == 10


def test_lines_without_newlines_and_crlf_are_accepted():
    lines = [json.dumps(RFT_EXAMPLE).encode() + b"\r\n"] * 5 + [
        json.dumps(RFT_EXAMPLE).encode()
    ] * 5
    assert check_rft(lines).example_count == 10


def test_messages_are_required():
    assert_line_error(check_rft(rft_file_with({"prompt": "hi"})), 3, 'missing "messages"')


@pytest.mark.parametrize("messages", [[], "hi", None, {"role": "user"}])
def test_messages_must_be_a_non_empty_list(messages):
    report = check_rft(rft_file_with({"messages": messages}))
    assert_line_error(report, 3, '"messages" must be a non-empty list')


def test_each_message_must_be_an_object():
    report = check_rft(rft_file_with({"messages": ["hello"]}))
    assert_line_error(report, 3, "messages[0] must be an object, got a string")


def test_system_role_is_rejected_for_reinforcement_with_a_hint():
    bad = {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}]}
    report = check_rft(rft_file_with(bad))
    assert_line_error(report, 3, 'messages[0] has role "system"')
    assert 'use "developer"' in report.error.message


@pytest.mark.parametrize("role", ["function", "bot", None])
def test_unknown_roles_are_rejected(role):
    bad = {"messages": [{"role": "user", "content": "y"}, {"role": role, "content": "x"}]}
    report = check_rft(rft_file_with(bad))
    assert_line_error(report, 3, "messages[1].role must be one of developer, user, assistant, tool")


def test_last_message_must_be_from_user_for_reinforcement():
    bad = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    report = check_rft(rft_file_with(bad))
    assert_line_error(report, 3, 'the last message must have role "user"')
    assert 'got "assistant"' in report.error.message


def test_content_may_be_text_parts_and_images_are_refused_not_dropped():
    text_only = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Look."}]},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"}]},
        ]
    }
    assert check_rft(jsonl(*[text_only] * 10)).ok
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}]}
    report = check_rft(rft_file_with(with_image))
    assert_line_error(report, 3, "messages[0].content[1]: images are not supported")
    named = validate_dataset(
        rft_file_with(with_image), method="reinforcement", role="training_file", model="tiny-chat"
    )
    assert_line_error(
        named, 3, "messages[0].content[1]: images are not supported: tiny-chat reads text only"
    )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (5, "messages[0].content must be a string or a list of content parts, got a number"),
        (None, "messages[0].content must be a string or a list"),
        (["hi"], "messages[0].content[0] must be an object"),
        ([{"type": "text"}], 'messages[0].content[0] of type "text" needs a string "text"'),
        ([{"type": "image_url", "image_url": "x"}], 'needs an "image_url" with a "url"'),
        ([{"type": "input_audio", "input_audio": {}}], "audio inputs are not supported"),
        ([{"type": "file", "file": {}}], "file inputs are not supported"),
        ([{"type": "video"}], 'messages[0].content[0].type must be "text" or "image_url"'),
    ],
)
def test_bad_content(content, fragment):
    report = check_rft(rft_file_with({"messages": [{"role": "user", "content": content}]}))
    assert_line_error(report, 3, fragment)


def test_images_only_in_user_messages():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    bad = {
        "messages": [{"role": "developer", "content": [image]}, {"role": "user", "content": "q"}]
    }
    assert_line_error(check_rft(rft_file_with(bad)), 3, 'images are only allowed in "user"')


def test_assistant_turn_with_only_tool_calls_may_omit_content():
    example = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
            {"role": "user", "content": "thanks, and tomorrow?"},
        ]
    }
    assert check_rft(jsonl(*[example] * 10)).ok


@pytest.mark.parametrize("weight", [0, 1])
def test_assistant_weight_zero_or_one(weight):
    example = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "weight": weight},
            {"role": "user", "content": "q2"},
        ]
    }
    assert check_rft(jsonl(*[example] * 10)).ok


@pytest.mark.parametrize("weight", [2, 0.5, True, "1"])
def test_bad_weight(weight):
    bad = {
        "messages": [
            {"role": "assistant", "content": "a", "weight": weight},
            {"role": "user", "content": "q"},
        ]
    }
    assert_line_error(check_rft(rft_file_with(bad)), 3, "messages[0].weight must be 0 or 1")


def test_weight_only_on_assistant():
    bad = {"messages": [{"role": "user", "content": "q", "weight": 1}]}
    assert_line_error(check_rft(rft_file_with(bad)), 3, 'weight is only allowed on "assistant"')


def test_tools_must_be_a_list_of_function_definitions():
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    assert check_rft(jsonl(*[{**RFT_EXAMPLE, "tools": []}] * 10)).ok
    assert check_rft(jsonl(*[{**RFT_EXAMPLE, "tools": [tool]}] * 10)).ok
    report = check_rft(rft_file_with({**RFT_EXAMPLE, "tools": {"name": "lookup"}}))
    assert_line_error(report, 3, '"tools" must be a list, got an object')
    report = check_rft(rft_file_with({**RFT_EXAMPLE, "tools": [tool, {"type": "function"}]}))
    assert_line_error(report, 3, "tools[1] must be")


def test_supervised_lines_with_tools_are_refused():
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    example = {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        "tools": [tool],
    }
    report = check_sft(jsonl(*[example] * 10))
    assert_line_error(report, 1, '"tools" must be empty for supervised fine-tuning')


def test_empty_file_is_an_error():
    report = check_rft([])
    assert report.error.message == "The training file is empty; it must hold at least one example."
    assert check_rft([b"\n", b"  \n"]).error.message.startswith("The training file is empty")


def test_training_file_needs_ten_examples():
    report = check_rft(jsonl(*[RFT_EXAMPLE] * 9))
    assert report.error.message == "The training file has 9 examples; at least 10 are required."
    assert report.example_count == 9


def test_validation_file_needs_one_example():
    assert check_rft(jsonl(RFT_EXAMPLE), role="validation_file").ok


def test_max_examples_stops_at_the_first_line_over_the_limit():
    lines = jsonl(*[RFT_EXAMPLE] * 3)

    def endless():
        yield from lines
        raise AssertionError("read past the limit")

    report = validate_dataset(
        endless(), method="reinforcement", role="validation_file", max_examples=2
    )
    assert_line_error(report, 3, "more than 2 examples")
    assert report.example_count == 2


def test_custom_min_examples():
    lines = jsonl(*[RFT_EXAMPLE] * 3)
    assert validate_dataset(lines, method="reinforcement", role="training_file", min_examples=3).ok


def test_default_limits():
    assert default_example_limits("reinforcement", "training_file") == (10, 50_000)
    assert default_example_limits("reinforcement", "validation_file") == (1, 1_000)
    assert default_example_limits("supervised", "training_file") == (10, None)


def check_sft(lines: list[bytes]) -> DatasetReport:
    return validate_dataset(lines, method="supervised", role="training_file")


def test_valid_supervised_file_allows_system():
    assert check_sft(jsonl(*[SFT_EXAMPLE] * 10)).example_count == 10


def test_supervised_last_message_must_be_from_assistant():
    bad = {"messages": [{"role": "user", "content": "q"}]}
    report = check_sft(jsonl(SFT_EXAMPLE, bad, *[SFT_EXAMPLE] * 10))
    assert_line_error(report, 2, 'the last message must have role "assistant"')


def test_supervised_rejects_unknown_roles():
    bad = {
        "messages": [{"role": "function", "content": "q"}, {"role": "assistant", "content": "a"}]
    }
    report = check_sft(jsonl(bad))
    assert_line_error(report, 1, "must be one of system, developer, user, assistant, tool")


def test_iter_examples_skips_blank_lines():
    lines = [b"\n", *jsonl(RFT_EXAMPLE), "  \n", json.dumps(SFT_EXAMPLE)]
    assert list(iter_examples(lines)) == [RFT_EXAMPLE, SFT_EXAMPLE]


def test_iter_examples_raises_on_a_bad_line():
    with pytest.raises(ValueError, match="Line 2: invalid JSON"):
        list(iter_examples([*jsonl(RFT_EXAMPLE), b"{"]))


def test_item_fields_drop_messages_and_tools():
    example = {**RFT_EXAMPLE, "tools": [], "compliant": "yes"}
    assert item_fields(example) == {"reference_answer": 4, "compliant": "yes"}


DPO_EXAMPLE = {
    "input": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2 + 2?"},
        ],
        "tools": [],
        "parallel_tool_calls": False,
    },
    "preferred_output": [{"role": "assistant", "content": "4"}],
    "non_preferred_output": [{"role": "assistant", "content": "Four, I believe."}],
}


def check_dpo(lines: list[bytes], role: str = "training_file") -> DatasetReport:
    return validate_dataset(lines, method="dpo", role=role)


def test_valid_dpo_file():
    assert check_dpo(jsonl(*[DPO_EXAMPLE] * 10)).example_count == 10


def test_dpo_lines_need_openai_preference_format():
    report = check_dpo(jsonl(DPO_EXAMPLE, SFT_EXAMPLE, *[DPO_EXAMPLE] * 10))
    assert_line_error(report, 2, 'missing "input"')
    assert report.error.param == "training_file"
    assert report.example_count == 1


def with_change(path: tuple[str, ...], value: object) -> dict:
    """DPO_EXAMPLE with the value at `path` replaced (or removed, for `...`)."""
    example = json.loads(json.dumps(DPO_EXAMPLE))
    holder = example
    for key in path[:-1]:
        holder = holder[key]
    if value is ...:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return example


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("input",), [], '"input" must be an object'),
        (("input", "messages"), [], '"input.messages" must be a non-empty list'),
        (("input", "messages", 1, "role"), "robot", "input.messages[1].role must be one of"),
        (
            ("input", "messages", 1),
            {"role": "assistant", "content": "4"},
            "must not be an assistant message",
        ),
        (
            ("input", "messages", 1, "content"),
            [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
            "input.messages[1].content[0]: images are not supported",
        ),
        (("input", "tools"), {"name": "add"}, '"input.tools" must be a list'),
        (("input", "tools"), [{"type": "web"}], "input.tools[0] must be"),
        (
            ("input", "tools"),
            [{"type": "function", "function": {"name": "add"}}],
            '"input.tools" must be empty',
        ),
        (("input", "parallel_tool_calls"), "yes", 'parallel_tool_calls" must be true or false'),
        (("preferred_output",), ..., 'missing "preferred_output"'),
        (("non_preferred_output",), ..., 'missing "non_preferred_output"'),
        (
            ("preferred_output",),
            {"role": "assistant", "content": "4"},
            '"preferred_output" must be a list of exactly one assistant message',
        ),
        (
            ("non_preferred_output",),
            [{"role": "assistant", "content": "4"}] * 2,
            '"non_preferred_output" must be a list of exactly one',
        ),
        (
            ("preferred_output", 0, "role"),
            "user",
            'preferred_output[0] must have role "assistant"',
        ),
        (("non_preferred_output", 0, "content"), 7, "non_preferred_output[0].content must be"),
        (
            ("preferred_output", 0),
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
            "preferred_output[0] has no content",
        ),
        (("preferred_output", 0, "weight"), 1, "preferred_output[0].weight is not used"),
    ],
)
def test_bad_dpo_lines_name_the_line_and_the_field(path, value, fragment):
    bad = with_change(path, value)
    report = check_dpo(jsonl(*[DPO_EXAMPLE] * 3, bad, *[DPO_EXAMPLE] * 10), role="validation_file")
    assert_line_error(report, 4, fragment)
    assert report.error.code == "invalid_validation_file"
    assert report.example_count == 3


def _png_url(size: tuple[int, int] = (8, 8)) -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _with_image(url: str) -> dict:
    image = {"type": "image_url", "image_url": {"url": url}}
    return {"messages": [{"role": "user", "content": [{"type": "text", "text": "?"}, image]}]}


def test_images_pass_for_a_model_that_reads_them_and_are_checked_one_by_one():
    asked = []

    def reads_images() -> None:
        asked.append(True)
        return None

    def check(lines: list[bytes]) -> DatasetReport:
        return validate_dataset(
            lines, method="reinforcement", role="training_file", image_support=reads_images
        )

    assert check(jsonl(*[_with_image(_png_url())] * 10)).ok
    assert asked == [True], "the model is asked once, at the first image"
    bad = [
        ("https://example.com/a.png", "image URLs are not fetched"),
        ("data:image/bmp;base64,AAAA", "image/bmp is not supported"),
        ("data:image/png;base64,not base64!", "not valid base64"),
        ("data:image/png;base64,aGVsbG8=", "not a readable PNG image"),
        (_png_url().replace("image/png", "image/webp"), "says image/webp, but the data is PNG"),
        (_png_url((8000, 8000)), "is 8000x8000 pixels"),
    ]
    for url, message in bad:
        assert_line_error(check(rft_file_with(_with_image(url))), 3, message)
    low = _with_image(_png_url())
    low["messages"][0]["content"][1]["image_url"]["detail"] = "low"
    assert_line_error(check(rft_file_with(low)), 3, "\"detail\": 'low' is not supported")
    auto = _with_image(_png_url())
    auto["messages"][0]["content"][1]["image_url"]["detail"] = "auto"
    assert check(jsonl(*[auto] * 10)).ok


def test_images_are_refused_for_methods_other_than_reinforcement():
    with_image = {**_with_image(_png_url()), "messages": [
        *_with_image(_png_url())["messages"], {"role": "assistant", "content": "A dot."}
    ]}  # fmt: skip
    report = validate_dataset(
        jsonl(*[with_image] * 10),
        method="supervised",
        role="training_file",
        image_support=lambda: None,
    )
    assert_line_error(
        report, 1, "images are not supported: they are trained on by reinforcement fine-tuning"
    )


def test_a_vision_model_of_another_kind_is_named():
    from app.images import vision_refusal

    assert vision_refusal({"model_type": "llava", "vision_config": {}}) is None
    assert vision_refusal({"model_type": "llama"}) == "it reads text only"
    assert vision_refusal(None) == "it reads text only"
    refusal = vision_refusal({"model_type": "qwen2_vl", "vision_config": {}})
    assert refusal is not None and "qwen2_vl vision model" in refusal
