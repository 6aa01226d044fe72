"""Plain-column statements compiled once per database, run on its driver's connection directly.

`app.reads` runs the reads every request makes this way: going through SQLAlchemy's
execution (a pooled connection's checkout and reset, the compiled cache's lookup, the result
object) cost several times what SQLite takes to answer. SQLAlchemy still writes the SQL and
decodes the values (JSON on SQLite); only its per-call machinery is left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic_core import from_json
from sqlalchemy import JSON, Dialect, Select
from sqlalchemy.types import TypeEngine

Decoder = Callable[[Any], Any]
_Shape = tuple[tuple[str, ...], list[int], list[tuple[int, Decoder]]]


class Described(Protocol):
    """A DB-API cursor: sqlite3's or psycopg's."""

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...

# compiled statements kept per process; they are module constants, so far fewer are used
MAX_COMPILED = 256


@dataclass
class CompiledRead:
    """One statement's SQL, how its parameters are passed, and how its values are decoded."""

    sql: str
    # the parameters' names in the order of the SQL's placeholders; None when passed by name
    positions: tuple[str, ...] | None
    # the statement's own values (a literal in a WHERE clause), under their generated names
    literals: Mapping[str, Any]
    dialect: Dialect
    # the selected columns' types, for this database
    types: tuple[TypeEngine[Any], ...]
    # the columns' names, those holding JSON text, and what decodes each other column that
    # needs it, once a result told their types in the database (SQLAlchemy's own decoders may
    # need them)
    _decoders: _Shape | None = field(default=None, repr=False)

    def parameters(self, given: Mapping[str, Any]) -> Mapping[str, Any] | tuple[Any, ...]:
        values = {**self.literals, **given}
        if self.positions is None:
            return values
        return tuple(values[name] for name in self.positions)

    def dicts(self, cursor: Described, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """`rows`, fetched by `cursor` (which ran this statement), as decoded dicts by column
        name."""
        names, json_columns, others = self._shape(cursor)
        if not json_columns and not others:
            return [dict(zip(names, row, strict=True)) for row in rows]
        result = []
        for row in rows:
            values = list(row)
            # JSON text decoded in the loop, not behind a decoder: a page of jobs has over a
            # hundred such values, and the extra call each cost a fifth of the page's decoding
            for index in json_columns:
                if (text := values[index]) is not None:
                    values[index] = json_value(text)
            for index, decode in others:
                values[index] = decode(values[index])
            result.append(dict(zip(names, values, strict=True)))
        return result

    def _shape(self, cursor: Described) -> _Shape:
        """The columns' names, those holding JSON text, and the others' decoders, by column
        index: read off the first cursor's description, as the SQL never changes (psycopg
        builds a description's column objects each time it is asked, a fifth of a small
        read's CPU)."""
        if self._decoders is None:
            description = cursor.description or ()
            processors = (
                _decoder(type_, type_.result_processor(self.dialect, column[1]))
                for type_, column in zip(self.types, description, strict=True)
            )
            decoders = [(index, p) for index, p in enumerate(processors) if p is not None]
            self._decoders = (
                tuple(column[0] for column in description),
                [index for index, decode in decoders if decode is _json_or_none],
                [(index, decode) for index, decode in decoders if decode is not _json_or_none],
            )
        return self._decoders


def _decoder(type_: TypeEngine[Any], processor: Decoder | None) -> Decoder | None:
    # JSON stored as text (SQLite): SQLAlchemy's own decoder is json.loads behind two calls
    # per value, NULLs included, and a page of jobs has over a hundred such values
    if processor is not None and isinstance(type_, JSON):
        return _json_or_none
    return processor


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json_value(text)


def json_value(text: str | bytes) -> Any:
    """`json.loads(text)`, parsed by pydantic's JSON reader (about 5 times faster on the small
    documents the tables hold); the standard one takes what it refuses (a lone surrogate)."""
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


def compile_read(statement: Select[Any], dialect: Dialect) -> CompiledRead:
    compiled = statement.compile(dialect=dialect)
    for bind in compiled.binds.values():
        if bind.expanding:  # its SQL depends on each call's values: SQLAlchemy's to write
            raise ValueError(f"parameter {bind.key!r} is a list; run it in a session")
        if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            raise ValueError(f"parameter {bind.key!r} needs converting; run it in a session")
    types = tuple(column.type.dialect_impl(dialect) for column in statement.selected_columns)
    positions = (
        tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    )
    # the statement's own values (the caller's parameters have none until given)
    literals = {name: bind.value for bind, name in compiled.bind_names.items() if not bind.required}
    return CompiledRead(compiled.string, positions, literals, dialect, types)


class CompiledReads:
    """Each statement compiled for one database once."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        # keyed by identity: statements are module constants (the statement is kept, so its
        # id is not reused)
        self._compiled: dict[int, tuple[Select[Any], CompiledRead]] = {}

    def __getitem__(self, statement: Select[Any]) -> CompiledRead:
        found = self._compiled.get(id(statement))
        if found is None:
            if len(self._compiled) >= MAX_COMPILED:  # someone builds statements per call
                self._compiled.clear()
            found = (statement, compile_read(statement, self._dialect))
            self._compiled[id(statement)] = found
        return found[1]
