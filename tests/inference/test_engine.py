"""The inference engine on a tiny random model: sampling controls, adapters, the pool, merging."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from app.inference_protocol import GenerateRequest, MergeRequest
from app.settings import Settings
from tests.inference.models import build_adapter, build_tiny_base
from worker.inference.answers import AnswerRules, ChoiceStream
from worker.inference.engine import InferenceEngine
from worker.inference.pool import ModelPool
from worker.inference.sampling import Completion, SamplingParams, Vocabulary, _apply_stop

MESSAGES = [{"role": "user", "content": "Name a colour."}]


@dataclass
class Tiny:
    engine: InferenceEngine
    base: str
    adapters: list[Path]
    root: Path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiny]:
    import torch

    # a tiny model's matrices are too small to share out: threads only add contention
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("engine")
    base_dir = build_tiny_base(root / "models")
    settings = Settings(data_dir=root / "data", model_dirs=[base_dir.parent])
    # adapters are named by their key in the checkpoints store: with local storage, their path
    # under the checkpoints folder
    adapters = [
        build_adapter(base_dir, settings.checkpoints_dir / f"adapter-{seed}", seed)
        for seed in (1, 2)
    ]
    # one adapter per base: every switch between the two evicts and reloads
    engine = InferenceEngine(settings, ModelPool(max_bases=1, max_adapters_per_base=1))
    yield Tiny(engine, base_dir.name, adapters, root)
    torch.set_num_threads(threads)


def generate(tiny: Tiny, **fields: object) -> list[tuple[str, str, int]]:
    fields = {"base_model": tiny.base, "messages": MESSAGES, "max_tokens": 12, **fields}
    response = tiny.engine.generate(GenerateRequest.model_validate(fields))
    assert response.prompt_tokens > 0
    return [(c.text, c.finish_reason, c.completion_tokens) for c in response.choices]


def test_a_seed_makes_sampling_repeatable_and_n_gives_distinct_choices(tiny: Tiny) -> None:
    first = generate(tiny, n=3, seed=11)
    assert len(first) == 3
    assert len({text for text, _, _ in first}) == 3
    assert generate(tiny, n=3, seed=11) == first
    assert generate(tiny, n=3, seed=12) != first


def test_max_tokens_ends_a_choice_with_length(tiny: Tiny) -> None:
    [(_, finish_reason, tokens)] = generate(tiny, max_tokens=4, temperature=0)
    assert (finish_reason, tokens) == ("length", 4)


def test_a_stop_string_cuts_the_text_before_it(tiny: Tiny) -> None:
    [(text, _, _)] = generate(tiny, seed=5, max_tokens=16)
    stop = text[6:9]
    [(cut, finish_reason, tokens)] = generate(tiny, seed=5, max_tokens=16, stop=[stop])
    assert cut == text[: text.index(stop)]
    assert finish_reason == "stop"
    assert tokens < 16


CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["東京", "Zürich", "São Paulo"]}},
    "required": ["city"],
    "additionalProperties": False,
}


def test_json_schema_choices_match_it_with_their_unicode_intact(tiny: Tiny) -> None:
    json_schema = {"name": "city", "schema": CITY_SCHEMA, "strict": True}
    choices = generate(tiny, n=4, seed=3, max_tokens=40, response_format="json_schema",
                       json_schema=json_schema)  # fmt: skip
    for text, finish_reason, _ in choices:
        assert finish_reason == "stop"
        parsed = json.loads(text)
        jsonschema.validate(parsed, CITY_SCHEMA)
        # the bytes of a character spread over several tokens come back whole
        assert text == json.dumps(parsed, ensure_ascii=False)


def test_json_object_choices_are_objects_or_a_prefix_of_one_cut_by_the_budget(
    tiny: Tiny,
) -> None:
    from worker.constrained import Constraint, ConstraintBatch, vocab_info
    from worker.trainer.tiny import load_smollm2_tokenizer

    choices = generate(tiny, n=8, seed=3, max_tokens=24, response_format="json_object")
    tokenizer = load_smollm2_tokenizer()
    for text, finish_reason, tokens in choices:
        if finish_reason == "stop":
            assert isinstance(json.loads(text), dict)
            continue
        assert tokens == 24
        # whatever way it is split into tokens, the text is a JSON object's beginning
        check = ConstraintBatch(vocab_info(tokenizer), [Constraint.from_json_object()])
        for token in tokenizer.encode(text, add_special_tokens=False):
            check.advance([token])
    # the tiny random model writes long keys, but its shortest answers close within budget
    assert "stop" in {finish_reason for _, finish_reason, _ in choices}


def test_a_schema_that_cannot_be_enforced_is_a_400_naming_it(tiny: Tiny) -> None:
    from app.inference_protocol import InferenceError

    json_schema = {"name": "zip", "strict": True, "schema": {"type": "string", "format": "zip"}}
    with pytest.raises(InferenceError) as raised:
        generate(tiny, response_format="json_schema", json_schema=json_schema)
    assert raised.value.status_code == 400
    assert raised.value.param == "response_format.json_schema.schema"
    assert "Unknown format: zip" in raised.value.message


def test_adapters_change_outputs_and_the_base_stays_itself(tiny: Tiny) -> None:
    def greedy(adapter: Path | None) -> str:
        adapter_key = adapter.name if adapter else None
        [(text, _, _)] = generate(tiny, temperature=0, adapter_key=adapter_key)
        return text

    base, first, second = greedy(None), greedy(tiny.adapters[0]), greedy(tiny.adapters[1])
    assert len({base, first, second}) == 3
    # after switching, evicting and reloading adapters, each model still answers as before
    assert [greedy(tiny.adapters[0]), greedy(None), greedy(tiny.adapters[1])] == [
        first,
        base,
        second,
    ]


def test_merge_writes_a_model_that_computes_what_base_plus_adapter_computes(tiny: Tiny) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    request = MergeRequest(
        base_model=tiny.base, adapter_key=tiny.adapters[0].name, output_key="one"
    )
    assert tiny.engine.merge(request).output_key == "one"
    # published to the merged-model store (with local storage: under the model cache)
    output_dir = tiny.engine.settings.model_cache_dir / "merged" / "one"
    assert (output_dir / "tokenizer.json").is_file()
    assert tiny.engine.merged.exists("one")
    # no staging directory left behind
    assert sorted(path.name for path in output_dir.parent.iterdir()) == ["one"]
    assert list((tiny.engine.settings.resolved_data_dir / "tmp").iterdir()) == []

    base_dir = tiny.root / "models" / tiny.base
    inputs = torch.tensor([[1, 20, 300, 4000]])
    merged = AutoModelForCausalLM.from_pretrained(output_dir, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(tiny.adapters[0]))
    with torch.no_grad():
        assert torch.allclose(merged(inputs).logits, adapted(inputs).logits, atol=1e-4)


def test_a_tiny_top_p_keeps_only_the_most_likely_token(tiny: Tiny) -> None:
    greedy = generate(tiny, temperature=0)
    assert generate(tiny, top_p=1e-6, seed=1) == greedy
    assert generate(tiny, top_p=1e-6, seed=2) == greedy


def test_a_deleted_adapter_is_unloaded_and_no_longer_served(tiny: Tiny) -> None:
    import shutil

    from app.inference_protocol import InferenceError

    engine = InferenceEngine(
        Settings(data_dir=tiny.root / "data", model_dirs=tiny.engine.settings.model_dirs),
        ModelPool(max_bases=1, max_adapters_per_base=3),
    )
    pool = engine.pool
    base_dir = engine._base_dir(tiny.base)
    copies = [
        shutil.copytree(adapter, engine.settings.checkpoints_dir / f"doomed-{adapter.name}")
        for adapter in tiny.adapters
    ]

    def ask(adapter: Path | None) -> None:
        request = {"base_model": tiny.base, "messages": MESSAGES, "max_tokens": 2}
        engine.generate(
            GenerateRequest.model_validate({**request, "adapter_key": adapter and adapter.name})
        )

    ask(copies[0])
    ask(copies[1])
    assert len(pool.loaded_adapters(base_dir)) == 2
    shutil.rmtree(copies[0])
    with pytest.raises(InferenceError) as raised:
        ask(copies[0])
    assert raised.value.status_code == 404
    ask(None)
    assert [key.rsplit("@", 1)[0] for key in pool.loaded_adapters(base_dir)] == [
        str(copies[1].resolve())
    ]
    ask(copies[1])
    # the last one gone too: the base is dropped and loads again, bare
    shutil.rmtree(copies[1])
    ask(None)
    assert pool.loaded_adapters(base_dir) == []
    ask(tiny.adapters[0])
    assert len(pool.loaded_adapters(base_dir)) == 1


def test_a_model_without_a_template_stops_at_the_next_turn(tmp_path: Path) -> None:
    """A pretrained model in the plain template ('User: ...' lines) answers up to the next
    'User:' line at most, as well as up to the caller's own stop strings, and its answer
    starts after the template's space."""
    from worker.inference.engine import _plan
    from worker.inference.pool import LoadedBase
    from worker.trainer.models import load_model_and_tokenizer

    chat = build_tiny_base(tmp_path)
    pretrained = tmp_path / "pretrained"
    shutil.copytree(chat, pretrained)
    (pretrained / "chat_template.jinja").unlink()
    request = GenerateRequest(
        base_model="any", messages=[{"role": "user", "content": "Hi"}], stop=["END"]
    )
    stops = {}
    for model_dir in (chat, pretrained):
        model, tokenizer = load_model_and_tokenizer(model_dir)
        _, rules = _plan(LoadedBase(model, Vocabulary(tokenizer), 2048), request)
        stops[model_dir.name] = rules.params.stop
    assert stops == {chat.name: ("END",), "pretrained": ("END", "\nUser:")}

    # the answer is cut there, and ends as stopped
    model, tokenizer = load_model_and_tokenizer(pretrained)
    ids = tokenizer(" Paris\nUser: and Rome?", add_special_tokens=False)["input_ids"]
    row = Completion(token_ids=ids)
    vocab = Vocabulary(tokenizer)
    _apply_stop(row, vocab, stops["pretrained"])
    # the space after 'Assistant:' is the template's: the answer is read without it
    assert (row.text, row.finish_reason) == ("Paris", "stop")
    assert vocab.decode(ids[:1]) == "Paris"
    assert Vocabulary(load_model_and_tokenizer(chat)[1]).decode(ids[:1]) == " Paris"

    # the whitespace leading into the next turn is cut too, where a caller's stop keeps it
    # (OpenAI's rule), and a stream sends exactly the final answer
    def finished(text: str, stop: tuple[str, ...]) -> Completion:
        row = Completion(token_ids=tokenizer(text, add_special_tokens=False)["input_ids"])
        _apply_stop(row, vocab, stop)
        assert row.finish_reason == "stop"
        return row

    assert finished(" Paris \n\nUser: and Rome?", stops["pretrained"]).text == "Paris"
    assert finished(" Paris \nEND\nUser:", stops["pretrained"]).text == "Paris \n"
    answer = finished(" Paris,\n\nFrance\n\nUser: and Rome?", stops["pretrained"])
    rules = AnswerRules(SamplingParams(max_tokens=99, stop=stops["pretrained"]))
    stream, events = ChoiceStream(0, vocab, rules), []
    for length in range(1, len(answer.token_ids) + 1):  # as sampling grows and stops a row
        growing = Completion(token_ids=answer.token_ids[:length])
        _apply_stop(growing, vocab, rules.params.stop)
        events += stream.events(growing)
        if growing.finish_reason is not None:
            break
    assert events[-1].finish_reason == "stop"
    assert answer.text == "Paris,\n\nFrance"
    assert "".join(event.text for event in events) == answer.text
