from __future__ import annotations

import pytest
import sacrebleu
from nltk.translate.gleu_score import sentence_gleu
from nltk.translate.meteor_score import meteor_score
from rapidfuzz import fuzz, utils
from rouge_score.rouge_scorer import RougeScorer

from app.graders import GraderConfig, grade, make_sample
from app.graders.similarity import METRICS, similarity
from app.graders.wordnet import load_wordnet

TEXT = "the quick brown fox jumped over the lazy dog"
REFERENCE = "the quick brown fox jumps over the lazy dog"
LEXICAL_METRICS = [metric for metric in METRICS if metric != "cosine"]


def score(text: str, reference: str, metric: str, config: GraderConfig, **extra: object):
    grader = {
        "type": "text_similarity",
        "name": "sim",
        "input": "{{sample.output_text}}",
        "reference": "{{item.reference}}",
        "evaluation_metric": metric,
        **extra,
    }
    return grade(grader, make_sample(text), {"reference": reference}, config)


def test_fuzzy_match_is_rapidfuzz_wratio(config: GraderConfig) -> None:
    expected = fuzz.WRatio(TEXT, REFERENCE, processor=utils.default_process) / 100
    assert score(TEXT, REFERENCE, "fuzzy_match", config).reward == pytest.approx(expected)
    assert score("Paris!", "paris", "fuzzy_match", config).reward == 1.0


def test_bleu_is_sacrebleu_sentence_bleu(config: GraderConfig) -> None:
    expected = sacrebleu.sentence_bleu(TEXT, [REFERENCE]).score / 100
    assert 0 < expected < 1
    assert score(TEXT, REFERENCE, "bleu", config).reward == pytest.approx(expected)


def test_gleu_is_nltk_sentence_gleu(config: GraderConfig) -> None:
    expected = sentence_gleu([REFERENCE.split()], TEXT.split())
    assert score(TEXT, REFERENCE, "gleu", config).reward == pytest.approx(expected)


def test_meteor_is_nltk_meteor_with_wordnet(config: GraderConfig) -> None:
    wordnet = load_wordnet()
    if wordnet is None:
        pytest.skip("no WordNet data installed (apt-get install wordnet-base)")
    expected = meteor_score([REFERENCE.split()], TEXT.split(), wordnet=wordnet)
    assert score(TEXT, REFERENCE, "meteor", config).reward == pytest.approx(expected)
    # the synonym stage: "car" matches "auto" only through WordNet
    with_synonym = score("the car was fast", "the auto was fast", "meteor", config).reward
    without = score("the cat was fast", "the auto was fast", "meteor", config).reward
    assert with_synonym > without


@pytest.mark.parametrize("number", ["1", "2", "3", "4", "5", "l"])
def test_rouge_is_rouge_score_fmeasure(number: str, config: GraderConfig) -> None:
    rouge_type = f"rouge{number.upper() if number == 'l' else number}"
    expected = RougeScorer([rouge_type]).score(REFERENCE, TEXT)[rouge_type].fmeasure
    assert score(TEXT, REFERENCE, f"rouge_{number}", config).reward == pytest.approx(expected)


@pytest.mark.parametrize("metric", LEXICAL_METRICS)
def test_identical_texts_score_near_one_and_disjoint_near_zero(
    metric: str, config: GraderConfig
) -> None:
    same = score(REFERENCE, REFERENCE, metric, config)
    different = score("zebra xylophone quartz", REFERENCE, metric, config)
    assert not same.has_error and not different.has_error
    assert 0.95 <= same.reward <= 1.0
    assert 0.0 <= different.reward < 0.4
    assert same.scores[metric] == same.reward


@pytest.mark.parametrize("metric", LEXICAL_METRICS)
def test_empty_strings(metric: str) -> None:
    assert similarity("", "", metric) == 1.0
    assert similarity("", "reference", metric) == 0.0
    assert similarity("text", "   ", metric) == 0.0


@pytest.mark.parametrize("metric", LEXICAL_METRICS)
def test_unicode_and_long_inputs_stay_in_range(metric: str) -> None:
    unicode_score = similarity("Der Fuß ist groß 日本 語", "Der Fuß ist groß 日本 語", metric)
    assert 0.95 <= unicode_score <= 1.0
    long_text = " ".join(f"w{i % 500}" for i in range(20_000))
    assert 0.0 <= similarity(long_text, long_text[::-1], metric) <= 1.0


def test_over_long_inputs_are_truncated_and_flagged(config: GraderConfig) -> None:
    long_text = "alpha beta " * 20_000
    result = score(long_text, long_text, "rouge_l", config)
    assert result.reward == 1.0
    assert result.errors["truncated_observation_error"] is True
    assert score("alpha", "alpha", "rouge_l", config).errors["truncated_observation_error"] is False


def test_rouge_keeps_non_latin_words() -> None:
    assert similarity("東京 大阪", "東京 大阪", "rouge_1") == 1.0
    assert similarity("東京 大阪", "札幌 福岡", "rouge_1") == 0.0


def test_pass_threshold_is_accepted_and_reported(config: GraderConfig) -> None:
    result = score(TEXT, REFERENCE, "fuzzy_match", config, pass_threshold=0.5)
    assert result.scores["passed"] == 1.0
    assert result.reward == result.scores["fuzzy_match"]
    assert score("zzz", REFERENCE, "fuzzy_match", config, pass_threshold=0.5).scores["passed"] == 0
