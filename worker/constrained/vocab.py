"""A model's vocabulary as llguidance reads it: built once per tokenizer and set of end tokens
(about a second for a 49k vocabulary), then shared by every batch."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

import llguidance
import llguidance.hf

from worker.constrained.grammars import Constraint, ConstraintError


class VocabInfo:
    """llguidance's tokenizer for one Hugging Face tokenizer, with the tokens that end a
    completion: a complete grammar allows exactly these."""

    def __init__(self, tokenizer: Any, eos_ids: Iterable[int]) -> None:
        self.size = len(tokenizer)  # mask width; logits wider than this are masked beyond it
        self.eos_ids = tuple(sorted(set(eos_ids)))
        if not self.eos_ids:
            raise ValueError("a constrained vocabulary needs at least one end-of-sequence token")
        self.tokenizer = llguidance.hf.from_tokenizer(
            tokenizer, n_vocab=self.size, eos_token=list(self.eos_ids)
        )

    def matcher(self, constraint: Constraint) -> Any:
        """A fresh llguidance matcher for `constraint`: a copy of one compiled per vocabulary."""
        template = constraint._templates.get(self)
        if template is None:
            template = llguidance.LLMatcher(self.tokenizer, constraint.grammar, log_level=0)
            if template.is_error():
                raise ConstraintError(
                    f"The {constraint.description} cannot be enforced: {template.get_error()}"
                )
            constraint._templates[self] = template
        return template.deep_copy()


_cache: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], VocabInfo]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def vocab_info(tokenizer: Any, eos_ids: Iterable[int] | None = None) -> VocabInfo:
    """The VocabInfo of `tokenizer` (a fast Hugging Face tokenizer), cached while the tokenizer
    lives. `eos_ids` default to the tokenizer's end-of-sequence token."""
    ends = tuple(sorted(set(eos_ids if eos_ids is not None else [tokenizer.eos_token_id])))
    with _lock:
        by_ends = _cache.setdefault(tokenizer, {})
        if ends not in by_ends:
            by_ends[ends] = VocabInfo(tokenizer, ends)
        return by_ends[ends]
