"""A request's read-only database work, run without a thread hop where the database allows.

FastAPI runs sync code in a thread pool, and on a busy server each hop between the event loop
and a thread costs more than the read itself: both wait for the GIL, and a thread that wants
it waits out the interpreter's switch interval behind the loop. So the list and retrieve
routes hand their whole read (the API key's project, then the rows) to `Reads.run`:

- SQLite: the read runs on the event loop itself, on a connection only the loop uses. SQLite
  is a library inside this process and a WAL reader never waits for writers, so reading a
  page is CPU work like serialising the answer. That connection's busy timeout is 0: the rare
  read that would have to wait (a WAL being recovered after a crash) fails at once and runs
  again on a thread, with the ordinary 30 s timeout.
- PostgreSQL: the same code runs in a greenlet over psycopg's asyncio connection
  (SQLAlchemy's `AsyncSession.run_sync`), so waiting for the server yields the loop; in
  autocommit, since one read needs no transaction.
- any other database, and pages of more than LOOP_READ_ROWS rows (`run_page`): one thread hop,
  holding a pooled connection only inside the thread, so no request waits for a thread while
  holding a connection (the deadlock `app.auth.get_session` explains).

The work is an ordinary function of a sync `Session`, as the write routes' services take.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool
from starlette.concurrency import run_in_threadpool

from app.db import POOL_SIZE, enable_sqlite_concurrency, session_factory
from app.settings import Settings

T = TypeVar("T")
PageT = TypeVar("PageT", bound="HasMore")
# a page of at most this many rows is read on the loop (a few ms at most); a larger one in a
# thread, so that one big listing does not hold up every other request
LOOP_READ_ROWS = 100


class HasMore(Protocol):
    has_more: bool


# SQLite's messages for a lock that a busy timeout of 0 did not wait for
_BUSY_MESSAGES = ("database is locked", "database is busy", "database table is locked")


class Reads:
    """Runs read-only work in a session; this base class always hops to a thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # at most as many reads hold a pooled connection as the pool has (see app.db)
        self._slots = asyncio.Semaphore(POOL_SIZE)

    async def run(self, work: Callable[[Session], T]) -> T:
        """`work(session)`."""
        return await self.in_thread(work)

    async def run_page(self, read: Callable[[Session, int], PageT], limit: int) -> PageT:
        """`read(session, limit)`, a page of at most `limit` rows: first of at most
        LOOP_READ_ROWS as `run` does, then, only if there are more and more were asked for,
        the whole page again in a thread."""
        first = await self.run(lambda session: read(session, min(limit, LOOP_READ_ROWS)))
        if not first.has_more or limit <= LOOP_READ_ROWS:
            return first
        return await self.in_thread(lambda session: read(session, limit))

    async def in_thread(self, work: Callable[[Session], T]) -> T:
        async with self._slots:
            return await run_in_threadpool(self._in_session, work)

    def _in_session(self, work: Callable[[Session], T]) -> T:
        with session_factory(self._settings)() as session:
            return work(session)


class SQLiteLoopReads(Reads):
    """Reads on the event loop, on its own connection (see the module's docstring)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # resolved once: resolving the data folder's path costs a tenth of a small read
        self._loop_sessions = _loop_sessions(settings.resolved_database_url)

    async def run(self, work: Callable[[Session], T]) -> T:
        try:
            with self._loop_sessions() as session:
                return work(session)
        except OperationalError as error:
            if not any(message in str(error.orig) for message in _BUSY_MESSAGES):
                raise
        return await self.in_thread(work)


class AsyncDriverReads(Reads):
    """Reads in a greenlet over an asyncio driver (PostgreSQL with psycopg).

    No ping before each read (a request reads twice, the key and then the rows, and a ping
    doubled the round trips): a read that finds its connection dropped (a restarted server)
    runs once more, on a new connection; reads change nothing, so that is safe.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        engine = create_async_engine(
            settings.resolved_database_url,
            isolation_level="AUTOCOMMIT",
            pool_size=POOL_SIZE,
            # no overflow: a connection opened past the pool was closed again when given
            # back, and a burst of requests then paid a server process start each; reads
            # past POOL_SIZE wait for a connection on the loop instead (`_slots`)
            max_overflow=0,
            pool_pre_ping=False,
        )
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def run(self, work: Callable[[Session], T]) -> T:
        try:
            return await self._run_once(work)
        except DBAPIError as error:
            # the pool forgets the dropped connection and those opened before it
            if not error.connection_invalidated:
                raise
        return await self._run_once(work)

    async def _run_once(self, work: Callable[[Session], T]) -> T:
        session: AsyncSession
        async with self._slots, self._sessions() as session:
            return await session.run_sync(work)


def reads_for(settings: Settings) -> Reads:
    """The fastest way this database offers to read without blocking the event loop."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        return SQLiteLoopReads(settings)
    if url.startswith("postgresql+psycopg"):
        return AsyncDriverReads(settings)
    return Reads(settings)


@lru_cache(maxsize=8)
def _loop_sessions(database_url: str) -> sessionmaker[Session]:
    """Sessions on the one connection of this process that only the event loop uses."""
    engine: Engine = create_engine(
        database_url,
        poolclass=StaticPool,
        connect_args={"check_same_thread": False, "timeout": 0},
    )
    enable_sqlite_concurrency(engine, busy_timeout_ms=0)
    return sessionmaker(bind=engine, expire_on_commit=False)
