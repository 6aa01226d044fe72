"""A request's read-only database work, run without a thread hop where the database allows.

FastAPI runs sync code in a thread pool, and on a busy server each hop between the event loop
and a thread costs more than the read itself: both wait for the GIL, and a thread that wants
it waits out the interpreter's switch interval behind the loop. So reads are awaited here:

- `Reads.rows`: the reads every request makes (its API key) and those of the routes clients
  poll (jobs, events, checkpoints, files, models) are single statements of plain columns,
  compiled once (`app.compiled_reads`) and run on the driver's connection, with no session,
  no ORM objects and no SQLAlchemy execution per call: those cost several times what SQLite
  takes to answer, and SQLAlchemy's asyncio layer cost about 300 us of CPU a statement.
- `Reads.run`: any other read, an ordinary function of a sync `Session`, as the write routes'
  services take.

Where each runs:
- SQLite: on the event loop itself, on a connection only the loop uses. SQLite is a library
  inside this process and a WAL reader never waits for writers, so reading a page is CPU
  work like serialising the answer. That connection's busy timeout is 0: the rare read that
  would have to wait (a WAL being recovered after a crash) fails at once and runs again in a
  thread, with the ordinary 30 s timeout.
- PostgreSQL: `rows` on a pool of psycopg's own asyncio connections (`psycopg_pool`), `run`
  in a greenlet over SQLAlchemy's asyncio engine (`AsyncSession.run_sync`); waiting for the
  server yields the loop either way; in autocommit, since one read needs no transaction.
- any other database, and pages of more than LOOP_READ_ROWS rows (`page`): one thread hop,
  holding a pooled connection only inside the thread, so no request waits for a thread while
  holding a connection (the deadlock `app.auth.get_session` explains).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine, Result, Select, create_engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool
from starlette.concurrency import run_in_threadpool

from app.compiled_reads import CompiledRead, CompiledReads, json_value
from app.db import POOL_SIZE, enable_sqlite_concurrency, session_factory
from app.settings import Settings

T = TypeVar("T")
# PostgreSQL connections of the plain statements' pool (`AsyncDriverReads.rows`), of POOL_SIZE
ROW_POOL_SIZE = POOL_SIZE // 2
ROW_POOL_TIMEOUT_SECONDS = 10.0
# a page of at most this many rows is read on the loop (a few ms at most); a larger one in a
# thread, so that one big listing does not hold up every other request
LOOP_READ_ROWS = 100


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

    async def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any], *, many: bool = False
    ) -> Sequence[dict[str, Any]]:
        """The rows of `statement`, a module-level constant of plain labelled columns, each
        row a dict of them. `many`: it may return more than LOOP_READ_ROWS rows,
        so it is read in a thread, where a long read holds up no other request."""
        return await self.in_thread(_rows_of(statement, parameters))

    async def close(self) -> None:
        """Let go of connections this object opened itself."""

    async def page(
        self, statement: Select[Any], parameters: Mapping[str, Any], limit: int
    ) -> tuple[Sequence[dict[str, Any]], bool]:
        """At most `limit` rows of `statement` (which takes `limit` as a parameter), and whether
        there are more: first at most LOOP_READ_ROWS as `rows` reads them, then, only if
        there are more and more were asked for, the whole page again in a thread."""
        first = min(limit, LOOP_READ_ROWS)
        found = await self.rows(statement, {**parameters, "limit": first + 1})
        if len(found) > first and limit > LOOP_READ_ROWS:
            found = await self.rows(statement, {**parameters, "limit": limit + 1}, many=True)
        return found[:limit], len(found) > limit

    async def in_thread(self, work: Callable[[Session], T]) -> T:
        async with self._slots:
            return await run_in_threadpool(self._in_session, work)

    def _in_session(self, work: Callable[[Session], T]) -> T:
        with session_factory(self._settings)() as session:
            return work(session)


def _rows_of(
    statement: Select[Any], parameters: Mapping[str, Any]
) -> Callable[[Session], list[dict[str, Any]]]:
    return lambda session: _dicts(session.execute(statement, parameters))


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    # zipped with the keys: several times faster than each row's own mapping
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


class SQLiteLoopReads(Reads):
    """Reads on the event loop, on its own connection (see the module's docstring)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        # resolved once: resolving the data folder's path costs a tenth of a small read
        self._loop_sessions = _loop_sessions(settings.resolved_database_url)
        self._loop_engine: Engine = self._loop_sessions.kw["bind"]
        self._compiled = CompiledReads(self._loop_engine.dialect)
        self._loop_connection: sqlite3.Connection | None = None

    async def run(self, work: Callable[[Session], T]) -> T:
        try:
            with self._loop_sessions() as session:
                return work(session)
        except OperationalError as error:
            if not _is_busy(error):
                raise
        return await self.in_thread(work)

    async def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any], *, many: bool = False
    ) -> Sequence[dict[str, Any]]:
        if not many:
            read = self._compiled[statement]
            try:
                cursor = self._connection().execute(read.sql, read.parameters(parameters))
                return read.dicts(cursor, cursor.fetchall())
            except sqlite3.OperationalError as error:
                if not _is_busy_message(str(error)):
                    raise
        return await self.in_thread(_rows_of(statement, parameters))

    def _connection(self) -> sqlite3.Connection:
        """The driver's connection under the loop's sessions (a StaticPool has only the one),
        opened with the first read."""
        if self._loop_connection is None:
            self._loop_connection = self._loop_engine.raw_connection().driver_connection
        return self._loop_connection


def _is_busy(error: OperationalError) -> bool:
    return _is_busy_message(str(error.orig))


def _is_busy_message(message: str) -> bool:
    return any(busy in message for busy in _BUSY_MESSAGES)


class AsyncDriverReads(Reads):
    """Reads in a greenlet over an asyncio driver (PostgreSQL with psycopg); `rows` on
    psycopg's asyncio connections directly.

    No ping before each read (a request reads twice, the key and then the rows, and a ping
    doubled the round trips): a read that finds its connection dropped (a restarted server)
    runs once more, on a new connection; reads change nothing, so that is safe.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._engine = engine = create_async_engine(
            settings.resolved_database_url,
            isolation_level="AUTOCOMMIT",
            pool_size=POOL_SIZE - ROW_POOL_SIZE,
            # no overflow: a connection opened past the pool was closed again when given
            # back, and a burst of requests then paid a server process start each; reads
            # past POOL_SIZE wait for a connection on the loop instead (`_slots`)
            max_overflow=0,
            pool_pre_ping=False,
        )
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._slots = asyncio.Semaphore(POOL_SIZE - ROW_POOL_SIZE)
        # the plain statements' own pool; with the sessions', POOL_SIZE connections in all
        self._row_slots = asyncio.Semaphore(ROW_POOL_SIZE)
        self._pool: AsyncConnectionPool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._pool_open = False
        self._compiled = CompiledReads(self._engine.dialect)

    async def run(self, work: Callable[[Session], T]) -> T:
        return await self._once_more_if_dropped(lambda: self._session_read(work))

    async def rows(
        self, statement: Select[Any], parameters: Mapping[str, Any], *, many: bool = False
    ) -> Sequence[dict[str, Any]]:
        if many:
            return await self.in_thread(_rows_of(statement, parameters))
        read = self._compiled[statement]
        try:
            return await self._fetch(read, parameters)
        except psycopg.OperationalError:
            # a connection dropped under the pool (a restarted server drops them all): the
            # pool replaces those that no longer answer, and the read, which changes
            # nothing, runs once more
            await (await self._row_pool()).check()
            return await self._fetch(read, parameters)

    async def _fetch(
        self, read: CompiledRead, parameters: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        pool = await self._row_pool()
        async with self._row_slots, pool.connection() as connection:
            cursor = await connection.execute(read.sql, read.parameters(parameters))
            rows = await cursor.fetchall()
        return read.dicts(cursor, rows)

    async def _row_pool(self) -> AsyncConnectionPool:
        """The pool of this event loop (a test may run the app on several loops in turn)."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            url = make_url(self._settings.resolved_database_url).set(drivername="postgresql")
            self._pool = AsyncConnectionPool(
                url.render_as_string(hide_password=False),
                min_size=1,
                max_size=ROW_POOL_SIZE,
                kwargs={"autocommit": True},
                configure=_decode_json_quickly,
                # how long a read waits for a connection (the server being down included)
                # before it fails
                timeout=ROW_POOL_TIMEOUT_SECONDS,
                open=False,
            )
            self._pool_loop, self._pool_open = loop, False
        if not self._pool_open:
            await self._pool.open()  # safe to repeat: racing first reads wait for one opening
            self._pool_open = True
        return self._pool

    async def close(self) -> None:
        if self._pool is not None and self._pool_loop is asyncio.get_running_loop():
            await self._pool.close()
        self._pool = None
        await self._engine.dispose()

    async def _once_more_if_dropped(self, read: Callable[[], Awaitable[T]]) -> T:
        try:
            return await read()
        except DBAPIError as error:
            # the pool forgets the dropped connection and those opened before it
            if not error.connection_invalidated:
                raise
        return await read()

    async def _session_read(self, work: Callable[[Session], T]) -> T:
        session: AsyncSession
        async with self._slots, self._sessions() as session:
            return await session.run_sync(work)


async def _decode_json_quickly(connection: psycopg.AsyncConnection[Any]) -> None:
    # psycopg decodes json and jsonb with `json.loads` by default
    set_json_loads(json_value, connection)


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
