"""Statements compiled once and run on the driver's connection (app.compiled_reads) give what
SQLAlchemy's own execution gives."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    select,
)  # fmt: skip

from app.compiled_reads import CompiledReads, compile_read, json_value

metadata = MetaData()
things = Table(
    "things", metadata,
    Column("id", Integer, primary_key=True), Column("name", String(20)),
    Column("data", JSON, nullable=True), Column("kind", String(10)),
)  # fmt: skip

# literals in the WHERE clause, and a caller's parameter
NAMED_OF_KIND = (
    select(things.c.id, things.c.name.label("title"), things.c.data)
    .where(things.c.kind == "a", things.c.name != "w")
    .where(things.c.id > bindparam("above"))
    .order_by(things.c.id)
)


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'things.db'}"
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            things.insert(),
            [
                {"id": 1, "name": "x", "data": {"a": [1, 2]}, "kind": "a"},
                {"id": 2, "name": "y", "data": None, "kind": "a"},
                {"id": 3, "name": "z", "data": [True], "kind": "b"},
                {"id": 4, "name": "w", "data": {}, "kind": "a"},
                {"id": 5, "name": "z", "data": "text", "kind": "a"},
            ],
        )
    engine.dispose()
    return url


def test_rows_are_those_sqlalchemy_gives(database: str) -> None:
    engine = create_engine(database)
    with engine.connect() as connection:
        expected = [dict(row._mapping) for row in connection.execute(NAMED_OF_KIND, {"above": 0})]
    read = CompiledReads(engine.dialect)[NAMED_OF_KIND]
    with sqlite3.connect(database.removeprefix("sqlite:///")) as driver:
        cursor = driver.execute(read.sql, read.parameters({"above": 0}))
        rows = read.dicts(cursor, cursor.fetchall())
    assert (
        rows
        == expected
        == [
            {"id": 1, "title": "x", "data": {"a": [1, 2]}},
            {"id": 2, "title": "y", "data": None},
            {"id": 5, "title": "z", "data": "text"},
        ]
    )


def test_a_statement_is_compiled_once(database: str) -> None:
    compiled = CompiledReads(create_engine(database).dialect)
    assert compiled[NAMED_OF_KIND] is compiled[NAMED_OF_KIND]


def test_parameters_sqlalchemy_would_convert_or_expand_are_refused(database: str) -> None:
    dialect = create_engine(database).dialect
    # SQLite stores datetimes as text: SQLAlchemy converts them, which this path does not do
    stamped = select(things.c.id).where(things.c.id == bindparam("at", type_=DateTime))
    with pytest.raises(ValueError, match="'at' needs converting"):
        compile_read(stamped, dialect)
    listed = select(things.c.id).where(things.c.name.in_(bindparam("names", expanding=True)))
    with pytest.raises(ValueError, match="'names' is a list"):
        compile_read(listed, dialect)


@pytest.mark.parametrize(
    "text",
    [
        "null", "[]", "{}", '{"a": [1, 2.5, "x"], "b": {"c": null}}', "1e400", "NaN",
        "-Infinity", "123456789012345678901234567890", '"\\ud800 lone"', '"caf\\u00e9"',
        '{"a": 1, "a": 2}', "0.1", "-0.0", "1.7976931348623157e308",
    ],
)  # fmt: skip
def test_json_values_decode_as_the_standard_reader_does(text: str) -> None:
    expected = json.loads(text)
    decoded = json_value(text)
    assert json.dumps(decoded) == json.dumps(expected)
    assert json_value(text.encode()) == decoded or decoded != decoded  # NaN is not itself
