"""Grammar-constrained decoding: JSON schemas, JSON objects, Lark grammars and regexes
enforced token by token, with llguidance (https://github.com/guidance-ai/llguidance).

    from worker.constrained import Constraint, ConstraintBatch, ConstraintError, vocab_info

    constraint = Constraint.from_response_format(response_format)  # None for "text"
    constraint = Constraint.from_json_schema(schema, strict=True)  # e.g. tool-call arguments
    constraint = Constraint.from_json_object()
    constraint = Constraint.from_grammar(lark)  # llguidance's Lark: %json{...}, <|special|>
    vocab = vocab_info(tokenizer, eos_ids)  # cached per tokenizer and end tokens
    batch = ConstraintBatch(vocab, [constraint] * n)  # one row per completion; None: free
    for each step:
        batch.mask(logits, rows)  # in place: -inf where a row's grammar refuses the token
        token = draw(logits)
        batch.advance(token, rows)  # rows: the batch rows these logits belong to
    batch.finished  # per row: the grammar is complete, only an end token may follow
    batch.accepting  # per row: an end token is allowed now
    batch.start(row, constraint)  # constrain a row from its next token on

A complete grammar allows exactly the vocabulary's end tokens (`eos_ids`), so a constrained
completion ends as soon as its object is closed; a caller that constrains only part of a
completion (a tool call's arguments) calls `start(row, None)` once `finished[row]` to let the
row write on freely, or puts what follows into the grammar (Lark: `%json{...} "</tool_call>"`).
The masks are computed one row at a time on the calling thread (~20-130 us a row for JSON on a
49k vocabulary) and applied as a logit bias on the logits' device. Building a Constraint compiles and checks the
grammar: a schema llguidance cannot enforce raises ConstraintError, whose message is fit for a
400. JSON is laid out as `json.dumps` does (", " and ": ", no other whitespace): free
whitespace lets a weak model pad an object until its budget runs out.

Why llguidance (measured on SmolLM2's 49,152-token vocabulary, a three-field schema, one
thread, on a shared 2-core machine): about 60-90 us per token for the mask, against about
250 us for outlines-core, whose regexes also cannot express a JSON object of any depth; and
xgrammar, at about 12 us, requires torch, triton and a TVM runtime as dependencies, where
llguidance is one wheel with none and also reads Lark grammars (for tool calls). A decoding
step of the smallest model here takes milliseconds, so the mask stays a few percent of it.
"""

from typing import TYPE_CHECKING, Any

from worker.constrained.grammars import Constraint, ConstraintError

if TYPE_CHECKING:
    from worker.constrained.batch import ConstraintBatch
    from worker.constrained.vocab import VocabInfo, vocab_info

__all__ = ["Constraint", "ConstraintBatch", "ConstraintError", "VocabInfo", "vocab_info"]


def __getattr__(name: str) -> Any:
    # imported on first use: building and checking a Constraint needs neither torch nor
    # transformers (the light worker checks a job's response_format with it)
    if name == "ConstraintBatch":
        from worker.constrained.batch import ConstraintBatch

        return ConstraintBatch
    if name in ("VocabInfo", "vocab_info"):
        from worker.constrained import vocab

        return getattr(vocab, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
