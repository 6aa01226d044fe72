"""Request reads (app.reads): on the event loop where the database allows it, never blocking it.

Each test reads through `reads_for` on a real migrated database, SQLite or PostgreSQL, and
looks at which thread ran the work and whether the loop kept running meanwhile.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app import reads as reads_module
from app.db import get_engine, session_factory
from app.migrate import upgrade
from app.reads import LOOP_READ_ROWS, AsyncDriverReads, Reads, SQLiteLoopReads, reads_for
from app.settings import Settings
from app.tables import Project
from tests.services import TEST_DATABASE_URL, fresh_postgres_database

T = TypeVar("T")


@dataclass
class Page:
    names: list[str]
    has_more: bool


def _settings(data_dir: Path, database_url: str | None = None) -> Settings:
    settings = Settings(data_dir=data_dir, database_url=database_url)
    upgrade(settings)
    with session_factory(settings).begin() as session:
        session.add_all(
            Project(id=f"proj_{index:04d}", name=f"p{index:04d}")
            for index in range(LOOP_READ_ROWS + 20)
        )
    return settings


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path / "data")


@pytest.fixture
def postgres_settings(tmp_path: Path) -> Iterator[Settings]:
    if not TEST_DATABASE_URL:
        pytest.skip("OPENRFT_TEST_DATABASE_URL is not set")
    with fresh_postgres_database() as url:
        yield _settings(tmp_path / "data", url)


_PROJECT_NAMES = select(Project.name).order_by(Project.name).limit(bindparam("limit"))


def _count_thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """A list that gets an entry each time app.reads hops to a thread."""
    hops: list[object] = []

    async def counted(function: Callable[..., T], *args: object) -> T:
        hops.append(function)
        return await run_in_threadpool(function, *args)

    monkeypatch.setattr(reads_module, "run_in_threadpool", counted)
    return hops


@contextmanager
def _locked_for(settings: Settings, seconds: float) -> Iterator[None]:
    """Every reader of the SQLite database is kept out for `seconds`, as while a database is
    recovered after a crash: a connection in exclusive locking mode holds it until it closes."""
    get_engine(settings.resolved_database_url).dispose()  # the setup's connections
    holder = sqlite3.connect(
        settings.resolved_data_dir / "openrft.db", isolation_level=None, check_same_thread=False
    )
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO projects (id, name, created_at) VALUES ('proj_x', 'x', 0)")
    holder.execute("COMMIT")
    release = threading.Timer(seconds, holder.close)
    release.start()
    try:
        yield
    finally:
        release.join()


def _count_with_thread(session: Session) -> tuple[int, int]:
    return session.scalar(select(func.count()).select_from(Project)) or 0, threading.get_ident()


def _project_page(session: Session, limit: int) -> tuple[Page, int]:
    rows = list(session.scalars(select(Project.name).order_by(Project.name).limit(limit + 1)))
    return Page(rows[:limit], len(rows) > limit), threading.get_ident()


async def _with_ticker(read: Awaitable[T]) -> tuple[T, int]:
    """The read's result, and how often a 10 ms ticker on the same loop ran meanwhile."""
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        return await read, ticks
    finally:
        done.set()
        await ticker


def _on_loop(run: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """`run()` on a fresh loop; its result and the loop's thread."""

    async def main() -> tuple[T, int]:
        return await run(), threading.get_ident()

    return asyncio.run(main())


def test_sqlite_and_postgres_get_their_own_way_of_reading(tmp_path: Path) -> None:
    assert type(reads_for(Settings(data_dir=tmp_path))) is SQLiteLoopReads
    postgres = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://u@127.0.0.1/db")
    assert type(reads_for(postgres)) is AsyncDriverReads
    other = Settings(data_dir=tmp_path, database_url="mysql+pymysql://u@127.0.0.1/db")
    assert type(reads_for(other)) is Reads


def test_a_sqlite_read_runs_on_the_event_loop_without_a_thread_hop(
    sqlite_settings: Settings,
) -> None:
    reads = reads_for(sqlite_settings)
    (count, work_thread), loop_thread = _on_loop(lambda: reads.run(_count_with_thread))
    assert count == LOOP_READ_ROWS + 20
    assert work_thread == loop_thread


def test_a_sqlite_read_that_would_wait_for_a_lock_waits_in_a_thread_while_the_loop_runs(
    sqlite_settings: Settings,
) -> None:
    reads = reads_for(sqlite_settings)
    started = time.monotonic()
    with _locked_for(sqlite_settings, seconds=0.5):
        ((count, work_thread), ticks), loop_thread = _on_loop(
            lambda: _with_ticker(reads.run(_count_with_thread))
        )
    assert count == LOOP_READ_ROWS + 21  # the read waited for the lock, then saw the row
    assert time.monotonic() - started >= 0.45
    assert work_thread != loop_thread
    assert ticks >= 20  # the loop went on while the read waited


def test_a_sqlite_page_larger_than_a_loop_read_is_read_whole_in_a_thread(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = reads_for(sqlite_settings)
    hops = _count_thread_hops(monkeypatch)

    (small, has_more), _ = _on_loop(lambda: reads.page(_PROJECT_NAMES, {}, 10))
    assert [row["name"] for row in small] == [f"p{index:04d}" for index in range(10)]
    assert has_more and hops == []

    (big, has_more), _ = _on_loop(lambda: reads.page(_PROJECT_NAMES, {}, LOOP_READ_ROWS + 50))
    assert len(big) == LOOP_READ_ROWS + 20 and not has_more
    # first at most LOOP_READ_ROWS on the loop; there were more, so all of them in a thread
    assert len(hops) == 1


def test_sqlite_rows_that_would_wait_for_a_lock_are_read_in_a_thread(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = reads_for(sqlite_settings)
    hops = _count_thread_hops(monkeypatch)
    with _locked_for(sqlite_settings, seconds=0.5):
        (rows, has_more), _ = _on_loop(lambda: reads.page(_PROJECT_NAMES, {}, 5))
    assert len(rows) == 5 and has_more
    assert len(hops) == 1


def test_a_slow_postgres_read_runs_on_the_loop_thread_and_yields_the_loop(
    postgres_settings: Settings,
) -> None:
    reads = reads_for(postgres_settings)

    def slow_count(session: Session) -> tuple[int, int]:
        session.execute(text("SELECT pg_sleep(0.4)"))
        return _count_with_thread(session)

    async def read() -> tuple[tuple[int, int], int]:
        return await _with_ticker(reads.run(slow_count))

    ((count, work_thread), ticks), loop_thread = _on_loop(read)
    assert count == LOOP_READ_ROWS + 20
    # a greenlet on the loop's thread, and the loop ran on while the server slept
    assert work_thread == loop_thread
    assert ticks >= 20


def test_a_postgres_read_whose_connection_was_dropped_runs_again_on_a_new_one(
    postgres_settings: Settings,
) -> None:
    import psycopg

    reads = reads_for(postgres_settings)
    url = postgres_settings.resolved_database_url.replace("postgresql+psycopg", "postgresql")

    async def read_twice() -> tuple[int, int]:
        first, _ = await reads.run(_count_with_thread)
        # as a server restart does: every connection of the pool is closed under it
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        second, _ = await reads.run(_count_with_thread)
        return first, second

    (first, second), _ = _on_loop(read_twice)
    assert first == second == LOOP_READ_ROWS + 20


def test_postgres_rows_are_read_on_the_loop_and_again_after_a_dropped_connection(
    postgres_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    reads = reads_for(postgres_settings)
    hops = _count_thread_hops(monkeypatch)
    url = postgres_settings.resolved_database_url.replace("postgresql+psycopg", "postgresql")

    async def read_twice() -> tuple[int, int]:
        try:
            # a few connections in the pool, all of them dropped by the "restart"
            await asyncio.gather(*(reads.page(_PROJECT_NAMES, {}, 10) for _ in range(4)))
            first, _ = await reads.page(_PROJECT_NAMES, {}, 10)
            with psycopg.connect(url, autocommit=True) as admin:  # as a server restart does
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            second, _ = await reads.page(_PROJECT_NAMES, {}, 10)
            return len(first), len(second)
        finally:
            await reads.close()

    (first, second), _ = _on_loop(read_twice)
    assert first == second == 10
    assert hops == []  # psycopg's asyncio connections: no thread


def test_postgres_rows_come_back_as_sqlite_gives_them(
    sqlite_settings: Settings, postgres_settings: Settings
) -> None:
    """The same statement, through SQLAlchemy on SQLite and straight to psycopg on PostgreSQL,
    gives the same dicts: the labels as keys, NULLs as None, the statement's own values passed.
    (JSON columns: tests/jobs/test_reads.py and the API tests run on both databases.)"""
    statement = (
        select(Project.id, Project.name.label("project_name"), Project.last_dispatched_at)
        .where(Project.name >= "p0001", Project.name <= "p0002")
        .order_by(Project.name)
    )

    async def both() -> tuple[object, object]:
        postgres = reads_for(postgres_settings)
        try:
            return await reads_for(sqlite_settings).rows(statement, {}), await postgres.rows(
                statement, {}
            )
        finally:
            await postgres.close()

    (sqlite_rows, postgres_rows), _ = _on_loop(both)
    assert (
        sqlite_rows
        == postgres_rows
        == [
            {"id": "proj_0001", "project_name": "p0001", "last_dispatched_at": None},
            {"id": "proj_0002", "project_name": "p0002", "last_dispatched_at": None},
        ]
    )
