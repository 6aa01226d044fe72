"""Schema upgrades through Alembic, callable from the command line and from start-up."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from app.settings import Settings

# a package of its own so that it ships in the wheel
MIGRATIONS_DIR = Path(str(files("migrations")))


class SchemaOutOfDate(RuntimeError):
    """The database is not at the schema this code expects; `openrft migrate` brings it there."""


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' would be read as interpolation by configparser
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings) -> None:
    """Bring the database to the newest schema (creates the SQLite file's folder first)."""
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings.resolved_database_url), "head")


def _current_revisions(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def check_schema(settings: Settings) -> None:
    """Raises SchemaOutOfDate unless the database is at the newest schema.

    Processes that may run as several replicas check rather than upgrade, so that two of them
    never race to migrate the same database; a one-shot `openrft migrate` does the upgrade.
    """
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    expected = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    current = _current_revisions(url)
    if current != expected:
        found = ", ".join(sorted(current)) or "no schema"
        raise SchemaOutOfDate(
            f"the database is at {found}, this version needs {', '.join(sorted(expected))}: "
            "run `openrft migrate` first"
        )
