"""Migrations upgrade an empty database to the ORM's schema on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from app.migrate import upgrade
from app.settings import Settings
from app.tables import Base
from tests.services import TEST_DATABASE_URL, fresh_postgres_database


def _check_schema(database_url: str) -> None:
    upgrade(Settings(database_url=database_url))
    upgrade(Settings(database_url=database_url))  # a second run changes nothing
    engine = create_engine(database_url)
    try:
        inspector = inspect(engine)
        for table in Base.metadata.sorted_tables:
            columns = {column["name"] for column in inspector.get_columns(table.name)}
            assert columns == {column.name for column in table.columns}, table.name
    finally:
        engine.dispose()


def test_upgrade_from_empty_on_sqlite(tmp_path: Path) -> None:
    _check_schema(f"sqlite:///{tmp_path / 'fresh.db'}")


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="OPENRFT_TEST_DATABASE_URL is not set")
def test_upgrade_from_empty_on_postgres() -> None:
    with fresh_postgres_database() as database_url:
        _check_schema(database_url)
