"""Token masks for a batch of completions decoded together, one grammar matcher per row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from worker.constrained.grammars import Constraint, ConstraintError
from worker.constrained.vocab import VocabInfo


class ConstraintBatch:
    """Rows of one decoding batch, each with its own constraint (or none).

    Each decoding step calls `mask(logits, rows)` before drawing and `advance(tokens, rows)`
    after, where logits row k (and tokens[k]) belong to batch row rows[k]; rows default to all
    rows in order, and a caller that drops ended rows from its batch passes the ones left.
    """

    def __init__(self, vocab: VocabInfo, constraints: Sequence[Constraint | None]) -> None:
        self.vocab = vocab
        self._matchers: list[Any] = [
            None if constraint is None else vocab.matcher(constraint) for constraint in constraints
        ]
        self._bitmask = torch.full(
            (len(constraints), (vocab.size + 31) // 32), -1, dtype=torch.int32
        )

    def __len__(self) -> int:
        return len(self._matchers)

    @property
    def constrained(self) -> list[bool]:
        return [matcher is not None for matcher in self._matchers]

    @property
    def finished(self) -> list[bool]:
        """Per row: its grammar is complete and cannot go on, so only an end token may follow."""
        return [matcher is not None and matcher.is_stopped() for matcher in self._matchers]

    @property
    def accepting(self) -> list[bool]:
        """Per row: the text so far is complete (an end token is allowed; unconstrained rows
        always are)."""
        return [matcher is None or matcher.is_accepting() for matcher in self._matchers]

    def start(self, row: int, constraint: Constraint | None) -> None:
        """Constrain `row` from its next token on, afresh (None: free from now on); e.g. a
        tool call's arguments once the model has opened one."""
        self._matchers[row] = None if constraint is None else self.vocab.matcher(constraint)

    def mask(self, logits: Tensor, rows: Sequence[int] | Tensor | None = None) -> Tensor:
        """Set to -inf, in place, the logits [len(rows), width] of the tokens each row's
        grammar does not allow next; rows without a constraint are left as they are.
        Columns past the tokenizer's vocabulary are never allowed in a constrained row."""
        batch_rows = self._rows(rows, logits.shape[0])
        targets = [
            (self._matchers[row], index)
            for index, row in enumerate(batch_rows)
            if self._matchers[row] is not None
        ]
        if not targets:
            return logits
        bitmask = self._bitmask
        row_bytes = bitmask.shape[1] * 4
        # one row at a time: llguidance's thread pool (LLExecutor) measured 10-20x slower per
        # row on a busy 2-core machine, where the rows' grammars take ~20-130 us each
        for matcher, index in targets:
            matcher.unsafe_compute_mask_ptr(bitmask[index].data_ptr(), row_bytes)
        indices = [index for _, index in targets]
        words = bitmask[indices].to(logits.device, non_blocking=True)
        bias = _bias(words, self.vocab.size, logits.shape[1]).to(logits.dtype)
        if indices == list(range(logits.shape[0])):
            return logits.add_(bias)
        return logits.index_add_(0, torch.tensor(indices, device=logits.device), bias)

    def advance(
        self, tokens: Sequence[int] | Tensor, rows: Sequence[int] | Tensor | None = None
    ) -> None:
        """Feed each row the token it drew. A token its grammar did not allow (a caller that
        drew from unmasked logits) raises ConstraintError."""
        token_list = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        for row, token in zip(self._rows(rows, len(token_list)), token_list, strict=True):
            matcher = self._matchers[row]
            if matcher is not None and not matcher.consume_token(int(token)):
                raise ConstraintError(
                    f"Row {row} drew a token its grammar refuses: {matcher.get_error()}"
                )

    def _rows(self, rows: Sequence[int] | Tensor | None, count: int) -> list[int]:
        if rows is None:
            if count != len(self._matchers):
                raise ValueError(f"{count} rows given for a batch of {len(self._matchers)}")
            return list(range(count))
        return rows.tolist() if isinstance(rows, Tensor) else list(rows)


# row b of BYTE_BIAS is the bias of byte value b's 8 tokens, lowest bit first: 0 if allowed
_BYTE_BITS = (torch.arange(256)[:, None] >> torch.arange(8)) & 1
BYTE_BIAS = torch.zeros(256, 8).masked_fill_(_BYTE_BITS == 0, float("-inf"))


def _bias(words: Tensor, size: int, width: int) -> Tensor:
    """[rows, words] int32 bitmask (bit i of word j: token 32j + i) -> [rows, width] float32
    logit bias: 0 where allowed, -inf elsewhere, and -inf past the `size` tokens it covers."""
    table = BYTE_BIAS.to(words.device)
    # a table lookup per byte (an embedding gather) is ~5x faster than shifting out each bit
    bytes_ = words.contiguous().view(torch.uint8).long()
    bias = torch.nn.functional.embedding(bytes_, table).flatten(1)[:, : min(size, width)]
    if width > bias.shape[1]:
        bias = torch.nn.functional.pad(bias, (0, width - bias.shape[1]), value=float("-inf"))
    return bias
