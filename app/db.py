"""Engine and session factory, one per database URL; the database's clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Float, create_engine, event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.functions import FunctionElement

from app.settings import Settings


def enable_sqlite_concurrency(engine: Engine, busy_timeout_ms: int = 30_000) -> None:
    """The API and the worker write the same SQLite file from separate processes: WAL, so
    readers never wait for a writer, and a writer waits up to `busy_timeout_ms` for another."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


# Connections per process: POOL_SIZE for API requests (app.auth admits at most that many
# requests with a session at once, so a request never waits for a connection), and
# POOL_RESERVE more for everything else in the process (health checks, background threads).
POOL_SIZE = 20
POOL_RESERVE = 10


@lru_cache(maxsize=8)
def get_engine(database_url: str) -> Engine:
    pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_RESERVE}
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )
        enable_sqlite_concurrency(engine)
        return engine
    return create_engine(database_url, pool_pre_ping=True, **pool)


@lru_cache(maxsize=8)
def _session_factory(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(database_url), expire_on_commit=False)


def session_factory(settings: Settings) -> sessionmaker[Session]:
    # every API request asks for one: resolving the data folder and making sure it exists is
    # done once per folder (and working directory, for a relative one), not per request
    folder = settings.data_dir.expanduser()
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    return _factory_for(folder, settings.database_url)


@lru_cache(maxsize=64)
def _factory_for(data_dir: Path, database_url: str | None) -> sessionmaker[Session]:
    settings = Settings(data_dir=data_dir, database_url=database_url)
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    return _session_factory(settings.resolved_database_url)


class db_clock(FunctionElement[float]):
    """The database's current time in unix seconds (fractional): leases and retry times are
    compared on one clock, never a host's."""

    type = Float()
    inherit_cache = True


@compiles(db_clock)
def _db_clock_default(_element: db_clock, _compiler: Any, **_: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(db_clock, "sqlite")
def _db_clock_sqlite(_element: db_clock, _compiler: Any, **_: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session that commits on success and rolls back on any exception."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
