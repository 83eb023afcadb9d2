"""The database: engines tuned per dialect, and transactions that turn an outage into
StoreUnavailable.

One code path for SQLite (WAL, synchronous=FULL, writers take the lock up front with
BEGIN IMMEDIATE and queue through a file lock) and PostgreSQL (psycopg 3).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

from receiver.errors import ConfigError, StoreUnavailable
from receiver.store.writerqueue import WRITE_WAIT, WriterQueue

_T = TypeVar("_T")
_RACE_RETRIES = 10  # each retry sees the rows the winner created; 2 suffice in practice
IDLE_PING = 1.0  # seconds a pooled PostgreSQL connection may idle before it is checked
_RETRYABLE = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure
_DB_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


def _pgcode(exc: BaseException | None) -> str | None:
    """PostgreSQL's SQLSTATE of a driver error wrapped by SQLAlchemy, if any."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def cause(exc: BaseException) -> str:
    """What went wrong, from the driver's own first line: its error's name and message
    (the engine hides SQL parameters; libpq names no password), at most 300 characters."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    said = " ".join(line.strip() for line in lines[:2]) if lines else ""
    return f"{type(orig).__name__}: {said}"[:300] if said else type(orig).__name__


class Raced(Exception):
    """Another transaction inserted a row this one meant to create: run it again."""


class Database:
    """One engine, its dialect, and the two kinds of transaction the adapters run in."""

    def __init__(self, engine: Engine, *, hold: bool = False) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        # ``hold``: cursor() keeps its connection between calls (the inbox writer's one
        # thread), instead of a checkout and a check-in of the pool for every commit.
        self._hold = hold
        self._held: Any = None
        # The driver's own exceptions for the same failures (DB-API names), raw cursors.
        dbapi: Any = engine.dialect.dbapi
        self._down = (*_DB_DOWN, dbapi.OperationalError, dbapi.InterfaceError)
        database = engine.url.database
        self._writers: Any = (
            WriterQueue(database + ".writer-lock")
            if not self.is_postgres and database and database != ":memory:"
            else contextlib.nullcontext()
        )

    @classmethod
    def from_url(
        cls, url: str, *, connections: int = 5, pooled: bool = False, hold: bool = False
    ) -> Database:
        return cls(make_engine(url, connections=connections, pooled=pooled), hold=hold)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on leaving the block."""
        try:
            with self._writers, self.engine.begin() as conn:
                yield conn
        except _DB_DOWN as exc:
            raise StoreUnavailable(cause(exc)) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn.execution_options(sqlite_begin="DEFERRED")
        except _DB_DOWN as exc:
            raise StoreUnavailable(cause(exc)) from exc

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A DB-API cursor whose one statement is a transaction by itself (autocommit).

        For the hottest path (the inbox): no statement compiled, no events run, and no
        BEGIN or COMMIT of its own: SQLite takes, syncs and frees its write lock inside
        the statement's one call into the driver, PostgreSQL commits it in the same
        round trip. Each call into the driver lets the other threads of the process take
        the interpreter, and each return waits for it, so every call saved shortens the
        time the write lock is held. The writer queue and outage mapping stay the same.
        """
        try:
            with self._writers:
                raw, self._held = self._held or self.engine.raw_connection(), None
                driver: Any = raw.driver_connection
                kept = False
                try:
                    if self.is_postgres:
                        driver.autocommit = True
                    yield raw.cursor()
                    kept = self._hold
                finally:
                    if self.is_postgres and not driver.closed:
                        driver.autocommit = False
                    if kept:
                        self._held = raw
                    else:
                        raw.close()  # back to the pool (after an error, always)
        except self._down as exc:
            raise StoreUnavailable(cause(exc)) from exc

    def close(self) -> None:
        """Give back a held connection, and close the pool's."""
        held, self._held = self._held, None
        if held is not None:
            held.close()
        self.engine.dispose()

    def transaction(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work(conn)`` in a write transaction; again if a concurrent insert won, or
        if PostgreSQL chose it as a deadlock's victim (nothing of it was committed)."""
        for _ in range(_RACE_RETRIES):
            try:
                with self.write() as conn:
                    return work(conn)
            except Raced:
                continue
            except StoreUnavailable as exc:
                if _pgcode(exc.__cause__) not in _RETRYABLE:
                    raise
        raise StoreUnavailable("lost the race to create a row too often")

    def compact(self) -> None:
        """SQLite: move the write-ahead log into the database file and empty it, so
        erased bytes (zeroed there by secure_delete) leave the files on disk too."""
        if self.is_postgres:
            return
        try:
            raw = self.engine.raw_connection()  # outside any transaction: BEGIN is ours
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        except self._down as exc:
            raise StoreUnavailable(cause(exc)) from exc


def _ping_when_idle(engine: Engine) -> None:
    """Before a pooled connection that sat idle is used, check that the server still has
    it (a restart or a dropped socket), and replace it if not.

    SQLAlchemy's pool_pre_ping does this on every checkout: a round trip on the webhook's
    hot path. A connection handed back moments ago is fresh; one idle for IDLE_PING
    seconds is where a dead one hides.
    """

    @sa_event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa_event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING:
            return
        try:
            dbapi_conn.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:  # the pool drops it and opens a new one
            raise sa.exc.DisconnectionError(type(exc).__name__) from exc


def make_engine(url: str, *, connections: int = 5, pooled: bool = False) -> Engine:
    """An engine with the settings each dialect needs for this workload.

    ``connections`` is how many a process keeps open to PostgreSQL (opened as needed):
    as many as its threads that write at once, so none is opened and closed per call.
    ``pooled``: PgBouncer in transaction mode hands each transaction any server
    connection: no startup options (the role's statement_timeout stands instead) and no
    server-side prepared statements (psycopg's live on one connection only).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        try:
            # A short connect timeout turns a dead database into a prompt 503, not a hang.
            engine = sa.create_engine(
                url,
                hide_parameters=True,  # parameters (state documents) never reach a log
                pool_size=connections,
                max_overflow=connections,
                connect_args={
                    "connect_timeout": 5,
                    # A half-open connection is noticed in about a minute, not two hours,
                    # and no statement runs longer than a writer would wait for its turn.
                    "keepalives": 1,
                    "keepalives_idle": 30,
                    "keepalives_interval": 10,
                    "keepalives_count": 3,
                    **(
                        {"prepare_threshold": None}
                        if pooled
                        else {"options": f"-c statement_timeout={int(WRITE_WAIT * 1000)}"}
                    ),
                },
            )
        except ModuleNotFoundError as exc:
            raise ConfigError(
                [
                    f"RECEIVER_DATABASE_URL: PostgreSQL needs the {exc.name} driver: "
                    "pip install 'gbg-receiver[postgres]'"
                ]
            ) from None
        _ping_when_idle(engine)
        return engine
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": 30})

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a 2xx means on disk, power cut included
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA secure_delete=ON")  # erased personal data is overwritten
        cur.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front: no deadlock upgrading a read lock mid-way.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
