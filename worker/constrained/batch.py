"""Token masks for a batch of completions decoded together, one grammar matcher per row."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import llguidance
import numpy as np
import torch
from torch import Tensor

from worker.constrained.grammars import Constraint, ConstraintError
from worker.constrained.vocab import VocabInfo

_executor: llguidance.LLExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> llguidance.LLExecutor:
    """llguidance's thread pool: the rows' masks are computed in parallel, without the GIL."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = llguidance.LLExecutor()
        return _executor


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
        bitmask = self._bitmask[: len(batch_rows)]
        executor().unsafe_compute_mask_ptr(
            targets, bitmask.data_ptr(), bitmask.shape[1] * 4, len(batch_rows)
        )
        indices = [index for _, index in targets]
        allowed = _unpack(bitmask[indices], self.vocab.size).to(logits.device)
        width = min(logits.shape[1], self.vocab.size)
        picked = torch.tensor(indices, device=logits.device)
        selected = logits[picked]
        selected[:, :width].masked_fill_(~allowed[:, :width], float("-inf"))
        selected[:, width:] = float("-inf")
        logits[picked] = selected
        return logits

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


def _unpack(bitmask: Tensor, size: int) -> Tensor:
    """[rows, words] int32 bitmask (bit i of word j: token 32j + i) -> [rows, size] bool."""
    bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")
    return torch.from_numpy(bits[:, :size]).bool()
