"""text_similarity metrics, each computed by the library that defines it, scaled to [0, 1].

Conventions where the libraries disagree or are undefined: two empty texts score 1.0 and one
empty text scores 0.0; word-level metrics (gleu, meteor) split on whitespace; rouge keeps
letters and digits of every script.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from app.graders.config import GraderConfig

ROUGE_TYPES = {
    "rouge_1": "rouge1",
    "rouge_2": "rouge2",
    "rouge_3": "rouge3",
    "rouge_4": "rouge4",
    "rouge_5": "rouge5",
    "rouge_l": "rougeL",
}
METRICS = ("cosine", "fuzzy_match", "bleu", "gleu", "meteor", *ROUGE_TYPES)
# Longer inputs are cut to this many characters (and flagged truncated_observation_error):
# meteor and gleu take about a second at this size.
MAX_TEXT_CHARS = 100_000


def fuzzy_match(text: str, reference: str) -> float:
    from rapidfuzz import fuzz, utils

    # the graders guide's own fuzzy-match python grader: WRatio on default-processed text
    return fuzz.WRatio(text, reference, processor=utils.default_process) / 100.0


def bleu(text: str, reference: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(text, [reference]).score / 100.0


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    return float(sentence_gleu([reference.split()], text.split()))


def meteor(text: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    from app.graders.wordnet import NoSynonyms, load_wordnet

    wordnet = load_wordnet() or NoSynonyms()
    return float(meteor_score([reference.split()], text.split(), wordnet=wordnet))


class _UnicodeTokenizer:
    """rouge-score's tokenizer keeps only [a-z0-9]; this one keeps letters and digits of any
    script, and is identical to it on ASCII text."""

    _TOKEN = re.compile(r"[^\W_]+")

    def tokenize(self, text: str) -> list[str]:
        return self._TOKEN.findall(text.lower())


@cache
def _rouge_scorer(rouge_type: str) -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([rouge_type], tokenizer=_UnicodeTokenizer())


def rouge_l(text: str, reference: str) -> float:
    """rouge-score's rougeL F-measure, with the longest common subsequence from rapidfuzz:
    rouge-score's pure-Python table takes minutes on two 20,000-word texts."""
    from rapidfuzz.distance import LCSseq

    tokenizer = _UnicodeTokenizer()
    target, prediction = tokenizer.tokenize(reference), tokenizer.tokenize(text)
    common = LCSseq.similarity(target, prediction) if target and prediction else 0
    if common == 0:
        return 0.0
    precision, recall = common / len(prediction), common / len(target)
    return 2 * precision * recall / (precision + recall)


def _rouge_n(metric: str) -> Callable[[str, str], float]:
    rouge_type = ROUGE_TYPES[metric]

    def score(text: str, reference: str) -> float:
        return _rouge_scorer(rouge_type).score(reference, text)[rouge_type].fmeasure

    return score


_SCORERS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{metric: _rouge_n(metric) for metric in ROUGE_TYPES if metric != "rouge_l"},
    "rouge_l": rouge_l,
}


def similarity(text: str, reference: str, metric: str, config: GraderConfig | None = None) -> float:
    """Score `text` against `reference` with `metric`, clipped to [0, 1]."""
    if not text.strip() or not reference.strip():
        return 1.0 if text.strip() == reference.strip() else 0.0
    if metric == "cosine":
        from app.graders.embeddings import cosine_similarity

        score = cosine_similarity(text, reference, config or GraderConfig())
    else:
        score = _SCORERS[metric](text, reference)
    return min(1.0, max(0.0, float(score)))
