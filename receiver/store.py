"""The state store: the only module with SQL (SQLAlchemy Core, no ORM).

One code path for SQLite (WAL, busy timeout, writers take the lock up front with
BEGIN IMMEDIATE) and PostgreSQL (psycopg 3). The dialect shows through in three places
only: taking a write lock, claiming due rows (FOR UPDATE SKIP LOCKED on PostgreSQL) and
keeping event commits in ``seq`` order (an advisory lock on PostgreSQL).

Every change of an instance goes through ``reconcile.decide()`` inside one transaction
that holds the instance's row lock, so concurrent webhooks, pollers and operators fold
their observations one after another and each status change writes exactly one event.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from receiver.errors import ConfigError, StoreUnavailable
from receiver.reconcile import Decision, Instance, Observation, WebhookReceived, decide
from receiver.schedule import Policy

_T = TypeVar("_T")
metadata = sa.MetaData()

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the rowid alias that
# AUTOINCREMENT (never reusing a deleted seq) applies to.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("instance_id", sa.String(128), primary_key=True),
    sa.Column("reference", sa.String(256)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("gbg_status", sa.String(64)),
    sa.Column("outcome", sa.String(256)),
    sa.Column("result", sa.JSON(none_as_null=True)),
    sa.Column("journey", sa.JSON(none_as_null=True)),
    sa.Column("state", sa.JSON(none_as_null=True)),
    sa.Column("webhook_claim", sa.String(64)),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("webhook_received_at", sa.Float),
    sa.Column("last_polled_at", sa.Float),
    sa.Column("completed_at", sa.Float),
    sa.Column("next_poll_at", sa.Float),
    sa.Column("poll_errors", sa.Integer, nullable=False),
    sa.Column("polling_gave_up", sa.Boolean, nullable=False),
    sa.Column("lease_owner", sa.String(128)),
    sa.Column("lease_expires_at", sa.Float),
    # Due selection reads only rows that have a next poll: O(due), not O(all).
    sa.Index(
        "ix_instances_due",
        "next_poll_at",
        sqlite_where=sa.text("next_poll_at IS NOT NULL"),
        postgresql_where=sa.text("next_poll_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_instances_unfinished",
        "registered_at",
        sqlite_where=sa.text("status = 'in_progress'"),
        postgresql_where=sa.text("status = 'in_progress'"),
    ),
    sa.Index("ix_instances_newest", "registered_at", "instance_id"),
    sa.Index("ix_instances_status_newest", "status", "registered_at", "instance_id"),
    sa.Index(
        "ix_instances_lease_owner",
        "lease_owner",
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
    ),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(128), nullable=False, index=True),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
    sa.Column("peer", sa.String(64)),
    sa.Column("claim", sa.String(64)),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("body", sa.LargeBinary),
    sqlite_autoincrement=True,
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("previous_status", sa.String(16)),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sqlite_autoincrement=True,
)

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # GCRA's theoretical arrival time: the earliest moment the next fetch may start.
    sa.Column("tat", sa.Float, nullable=False),
)

_INSTANCE_FIELDS = tuple(f.name for f in fields(Instance))

# Statements built once: the webhook path should not pay for building them per request.
_LOCK_INSTANCES = (
    sa.select(instances)
    .where(instances.c.instance_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(instances.c.instance_id)
    .with_for_update()
)
_UPDATE_INSTANCE = (
    instances.update()
    .where(instances.c.instance_id == sa.bindparam("b_instance_id"))
    .values({c: sa.bindparam("b_" + c) for c in _INSTANCE_FIELDS if c != "instance_id"})
)
_MINE = instances.c.lease_owner == sa.bindparam("b_owner")
_UPDATE_RELEASING = _UPDATE_INSTANCE.values(
    lease_owner=sa.case((_MINE, None), else_=instances.c.lease_owner),
    lease_expires_at=sa.case((_MINE, None), else_=instances.c.lease_expires_at),
)

FETCH_BUCKET = "gbg_state_fetch"
# Requests leave when their slots come up, give or take a few ms of wake-up jitter; slots
# spaced 5 % wider keep every one-second window within the limit all the same.
RATE_HEADROOM = 0.95
_RACE_RETRIES = 10  # each retry sees the rows the winner created; 2 suffice in practice
_EVENT_ORDER_LOCK = 0x6762_6701  # PostgreSQL advisory lock key: "gbg" + 1
_DB_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


class GroupCommitter:
    """Lets the concurrent callers of one process share a transaction (group commit).

    Each caller waits for its own result; one thread, started on first use in each
    process, takes whatever is queued, writes it in one transaction and wakes the
    callers. With nothing else queued a call goes straight through, so an idle
    receiver adds no latency; under load one commit serves many deliveries.
    """

    MAX_BATCH = 64

    def __init__(self, write: Callable[[list[Any]], list[Any]]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Waiter] = queue.SimpleQueue()
        self._pid: int | None = None

    def submit(self, *item: Any) -> Any:
        waiter = _Waiter(item)
        self._start()
        self._queue.put(waiter)
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    def _start(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:  # first use in this process (a fork copies no thread)
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                threading.Thread(target=self._run, name="group-commit", daemon=True).start()
                self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Waiter]) -> None:
        try:
            results = self._write([w.item for w in batch])
        except StoreUnavailable as exc:
            for waiter in batch:
                waiter.finish(error=exc)
        except BaseException as exc:  # every caller must wake up, whatever went wrong
            if len(batch) == 1:
                batch[0].finish(error=exc)
            else:  # one bad delivery must not fail the others: write them one by one
                for waiter in batch:
                    self._commit([waiter])
        else:
            for waiter, result in zip(batch, results, strict=True):
                waiter.finish(result=result)


class WriterQueue:
    """SQLite writers of every process take turns through one file lock.

    SQLite lets one writer in at a time and makes the others poll with growing sleeps
    (up to 100 ms each), which turns a busy moment into second-long tails. A blocking
    flock wakes the next writer the moment the lock is free instead.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()  # the threads of one process queue here first
        self._fd: int | None = None
        self._pid: int | None = None

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            if self._pid != os.getpid():  # a forked child needs its own open file
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # type: ignore[arg-type]
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        self._lock.release()


class _Waiter:
    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def finish(self, *, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class _Raced(Exception):
    """Another transaction inserted an instance this one meant to create."""


@dataclass(frozen=True)
class Delivery:
    """A webhook exactly as it arrived, less its credentials."""

    instance_id: str
    received_at: float
    body: bytes
    headers: dict[str, str]
    peer: str | None
    claim: str | None


class Store:
    """Instances, deliveries, the event log, claims with leases and the shared rate limit."""

    def __init__(self, engine: Engine, policy: Policy) -> None:
        self.engine = engine
        self.policy = policy
        self.is_postgres = engine.dialect.name == "postgresql"
        dialect = postgresql if self.is_postgres else sqlite
        self._insert_instances = (
            dialect.insert(instances)
            .on_conflict_do_nothing()
            .returning(instances.c.instance_id)  # executemany reports no rowcount on psycopg
        )
        self._committer = GroupCommitter(self.record_webhooks)
        database = engine.url.database
        self._writers: Any = (
            WriterQueue(database + ".writer-lock")
            if not self.is_postgres and database and database != ":memory:"
            else contextlib.nullcontext()
        )

    @classmethod
    def from_url(cls, url: str, policy: Policy) -> Store:
        return cls(make_engine(url), policy)

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self._writers, self.engine.begin() as conn:
                yield conn
        except _DB_DOWN as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn.execution_options(sqlite_begin="DEFERRED")
        except _DB_DOWN as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- writes through decide() --------------------------------------------------------

    def apply(
        self, observation: Observation, now: float, *, lease_owner: str | None = None
    ) -> Decision:
        """Fold one observation into its instance; release our lease on it if we hold one."""
        [decision] = self._transaction(
            lambda conn: self._fold(conn, [(observation, now)], lease_owner)
        )
        return decision

    def record_webhook(self, delivery: Delivery, now: float) -> Decision:
        """Store the raw delivery and its effect; answer once both are committed.

        Concurrent calls in one process share a transaction (group commit): the webhook
        path then pays one commit for many deliveries.
        """
        decision: Decision = self._committer.submit(delivery, now)
        return decision

    def record_webhooks(self, batch: list[tuple[Delivery, float]]) -> list[Decision]:
        """Store deliveries and their effects in one transaction, in the order given."""

        def write(conn: Connection) -> list[Decision]:
            conn.execute(deliveries.insert(), [_delivery_row(d) for d, _ in batch])
            return self._fold(
                conn, [(WebhookReceived(d.instance_id, d.claim), now) for d, now in batch], None
            )

        return self._transaction(write)

    def _transaction(self, work: Callable[[Connection], _T]) -> _T:
        """Run ``work(conn)`` in a write transaction; again if a concurrent insert won."""
        for _ in range(_RACE_RETRIES):
            try:
                with self._write() as conn:
                    return work(conn)
            except _Raced:
                continue
        raise StoreUnavailable("lost the race to create an instance too often")

    def _fold(
        self,
        conn: Connection,
        observations: list[tuple[Observation, float]],
        lease_owner: str | None,
    ) -> list[Decision]:
        """decide() each observation in turn on the locked rows, then write what changed."""
        ids = sorted({o.instance_id for o, _ in observations})
        rows = conn.execute(_LOCK_INSTANCES, {"ids": ids}).all()  # id order: no deadlocks
        known = {r.instance_id: _to_instance(r) for r in rows}
        current: dict[str, Instance] = dict(known)
        decisions = []
        for observation, now in observations:
            decision = decide(current.get(observation.instance_id), observation, now, self.policy)
            current[observation.instance_id] = decision.instance
            decisions.append(decision)
        created = [_to_row(current[i]) for i in ids if i not in known]
        if created:
            inserted = conn.execute(self._insert_instances, created).all()
            if len(inserted) != len(created):
                raise _Raced  # another writer created one first: decide again on its row
        changed = [
            {"b_" + k: v for k, v in _to_row(current[i]).items()}
            for i in ids
            if i in known and (current[i] != known[i] or lease_owner is not None)
        ]
        if changed:
            if lease_owner is None:
                conn.execute(_UPDATE_INSTANCE, changed)
            else:
                conn.execute(_UPDATE_RELEASING, [c | {"b_owner": lease_owner} for c in changed])
        new_events = [d.event for d in decisions if d.event is not None]
        if new_events:
            if self.is_postgres:
                # Sequence values are handed out before commit; holding this lock to
                # commit makes seq order commit order, so ?after= never skips an event.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_EVENT_ORDER_LOCK)))
            conn.execute(
                events.insert(),
                [
                    {
                        "instance_id": e.instance_id,
                        "status": e.status,
                        "previous_status": e.previous_status,
                        "source": e.source,
                        "at": e.at,
                    }
                    for e in new_events
                ],
            )
        return decisions

    # -- reads ----------------------------------------------------------------------------

    def get(self, instance_id: str) -> Instance | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(instances).where(instances.c.instance_id == instance_id)
            ).first()
        return _to_instance(row) if row else None

    def list_instances(
        self, *, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Instance], str | None]:
        """A page of instances, newest first, and the cursor of the next page."""
        query = sa.select(instances).order_by(
            instances.c.registered_at.desc(), instances.c.instance_id.desc()
        )
        if status is not None:
            query = query.where(instances.c.status == status)
        if cursor is not None:
            at, last_id = decode_cursor(cursor)
            query = query.where(
                sa.or_(
                    instances.c.registered_at < at,
                    sa.and_(instances.c.registered_at == at, instances.c.instance_id < last_id),
                )
            )
        with self._read() as conn:
            rows = conn.execute(query.limit(limit + 1)).all()
        page = [_to_instance(r) for r in rows[:limit]]
        more = len(rows) > limit
        return page, encode_cursor(page[-1]) if more else None

    def events_after(self, after: int, limit: int) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(events).where(events.c.seq > after).order_by(events.c.seq).limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def deliveries_for(self, instance_id: str) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(deliveries)
                .where(deliveries.c.instance_id == instance_id)
                .order_by(deliveries.c.id)
            ).all()
        return [dict(r._mapping) for r in rows]

    def metrics_snapshot(self, now: float) -> dict[str, Any]:
        """What the scrape-time gauges show, read in one go."""
        with self._read() as conn:
            by_status: dict[str, int] = dict(
                conn.execute(
                    sa.select(instances.c.status, sa.func.count()).group_by(instances.c.status)
                ).all()
            )
            resolved_by: dict[str, int] = dict(
                conn.execute(
                    sa.select(events.c.source, sa.func.count())
                    .where(events.c.status.in_(("completed", "failed")))
                    .group_by(events.c.source)
                ).all()
            )
            oldest = conn.execute(
                sa.select(sa.func.min(instances.c.registered_at)).where(
                    instances.c.status == "in_progress"
                )
            ).scalar()
            overdue = conn.execute(
                sa.select(sa.func.min(instances.c.next_poll_at)).where(
                    instances.c.next_poll_at <= now
                )
            ).scalar()
        return {
            "by_status": by_status,
            "resolved_by": resolved_by,
            "oldest_unfinished_age": max(0.0, now - oldest) if oldest is not None else 0.0,
            "poll_lag": max(0.0, now - overdue) if overdue is not None else 0.0,
        }

    def purge(self, before: float) -> tuple[int, int]:
        """Delete raw deliveries and drop state documents older than ``before``.

        Instance rows and events stay: they are the record. Answers (deliveries deleted,
        state documents dropped).
        """
        with self._write() as conn:
            deleted = conn.execute(deliveries.delete().where(deliveries.c.received_at < before))
            dropped = conn.execute(
                instances.update()
                .where(instances.c.state.is_not(None), instances.c.updated_at < before)
                .values(state=None)
            )
        return deleted.rowcount, dropped.rowcount

    def copy_from(self, source: Store, batch: int = 1000) -> dict[str, int]:
        """Copy every row of ``source`` into this empty store (SQLite -> PostgreSQL).

        Keys are kept, so event ``seq`` values and delivery ids stay what readers saw.
        """
        copied: dict[str, int] = {}
        with self._write() as conn:
            if conn.execute(sa.select(sa.func.count()).select_from(instances)).scalar():
                raise ValueError("the target store already has instances")
            for table in (instances, deliveries, events, rate_limits):
                conn.execute(table.delete())
                key = next(iter(table.primary_key.columns))
                copied[table.name], last = 0, None
                while True:
                    query = sa.select(table).order_by(key).limit(batch)
                    if last is not None:
                        query = query.where(key > last)
                    with source._read() as read:
                        rows = [dict(r._mapping) for r in read.execute(query)]
                    if not rows:
                        break
                    conn.execute(table.insert(), rows)
                    copied[table.name] += len(rows)
                    last = rows[-1][key.name]
            if self.is_postgres:  # the next seq and id continue after the copied ones
                for column in (events.c.seq, deliveries.c.id):
                    highest = sa.select(sa.func.max(column)).scalar_subquery()
                    sequence = sa.func.pg_get_serial_sequence(column.table.name, column.name)
                    conn.execute(sa.select(sa.func.setval(sequence, sa.func.greatest(highest, 1))))
        return copied

    # -- the poller's claims -------------------------------------------------------------

    def claim_due(self, owner: str, now: float, limit: int, lease: float) -> list[Instance]:
        """Lease up to ``limit`` due instances to ``owner``; nobody else fetches them now."""
        # SKIP LOCKED on PostgreSQL; SQLite's writer holds the whole database anyway.
        due = due_selection(now, limit).with_for_update(skip_locked=True)
        return self._lease(instances.c.instance_id.in_(due.scalar_subquery()), owner, now, lease)

    def claim(self, instance_id: str, owner: str, now: float, lease: float) -> Instance | None:
        """Lease one instance whatever its schedule (an operator's poll), if nobody holds it."""
        leased = self._lease(
            sa.and_(instances.c.instance_id == instance_id, _unleased(now)), owner, now, lease
        )
        return leased[0] if leased else None

    def _lease(self, where: Any, owner: str, now: float, lease: float) -> list[Instance]:
        with self._write() as conn:
            rows = conn.execute(
                instances.update()
                .where(where)
                .values(lease_owner=owner, lease_expires_at=now + lease)
                .returning(*instances.c)
            ).all()
        return [_to_instance(r) for r in rows]

    def release(self, owner: str, instance_id: str | None = None) -> int:
        """Give back the leases ``owner`` still holds (all, or one instance's)."""
        where = instances.c.lease_owner == owner
        if instance_id is not None:
            where = sa.and_(where, instances.c.instance_id == instance_id)
        with self._write() as conn:
            result = conn.execute(
                instances.update().where(where).values(lease_owner=None, lease_expires_at=None)
            )
        return result.rowcount

    def past_ttl(self, now: float, limit: int) -> list[str]:
        """Unfinished instances registered longer ago than the time-to-live."""
        with self._read() as conn:
            return list(
                conn.execute(
                    sa.select(instances.c.instance_id)
                    .where(
                        instances.c.status == "in_progress",
                        instances.c.registered_at <= now - self.policy.ttl,
                    )
                    .limit(limit)
                ).scalars()
            )

    def leases(self) -> list[tuple[str, str, float]]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(
                    instances.c.instance_id, instances.c.lease_owner, instances.c.lease_expires_at
                ).where(instances.c.lease_owner.is_not(None))
            ).all()
        return [(r.instance_id, r.lease_owner, r.lease_expires_at) for r in rows]

    # -- the rate limit all pollers share ------------------------------------------------

    def reserve_fetch(self, now: float, per_second: float) -> float:
        """Reserve the next free slot for a state fetch; answer when it may start.

        GCRA: one row holds the earliest time the next fetch may start, and every poller
        moves it forward in one atomic UPDATE, so the rate holds across all of them.
        """
        step = 1.0 / (per_second * RATE_HEADROOM)
        tat = rate_limits.c.tat
        with self._write() as conn:
            end = conn.execute(
                rate_limits.update()
                .where(rate_limits.c.name == FETCH_BUCKET)
                .values(tat=sa.case((tat > now, tat), else_=now) + step)
                .returning(rate_limits.c.tat)
            ).scalar_one()
        return float(end) - step

    def pause_fetches(self, until: float) -> None:
        """Hold every poller's fetches until ``until`` (GBG answered 429 Retry-After)."""
        tat = rate_limits.c.tat
        with self._write() as conn:
            conn.execute(
                rate_limits.update()
                .where(rate_limits.c.name == FETCH_BUCKET)
                .values(tat=sa.case((tat > until, tat), else_=until))
            )


def due_selection(now: float, limit: int) -> sa.Select[Any]:
    """Unleased instances whose next poll has come, soonest first: read off ix_instances_due."""
    return (
        sa.select(instances.c.instance_id)
        .where(instances.c.next_poll_at <= now, _unleased(now))
        .order_by(instances.c.next_poll_at)
        .limit(limit)
    )


def _unleased(now: float) -> sa.ColumnElement[bool]:
    """Nobody holds the instance: never leased, released, or its lease ran out."""
    return sa.or_(instances.c.lease_expires_at.is_(None), instances.c.lease_expires_at <= now)


def make_engine(url: str) -> Engine:
    """An engine with the settings each dialect needs for this workload."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        try:
            # A short connect timeout turns a dead database into a prompt 503, not a hang.
            return sa.create_engine(
                url, pool_size=5, max_overflow=10, connect_args={"connect_timeout": 5}
            )
        except ModuleNotFoundError as exc:
            raise ConfigError(
                [
                    f"RECEIVER_DATABASE_URL: PostgreSQL needs the {exc.name} driver: "
                    "pip install 'gbg-receiver[postgres]'"
                ]
            ) from None
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # a 2xx means on disk, power cut included
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front: no deadlock upgrading a read lock mid-way.
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def encode_cursor(last: Instance) -> str:
    raw = json.dumps([last.registered_at, last.instance_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raise ValueError for anything that is not a cursor this store made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, last_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("malformed cursor") from exc
    if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(last_id, str):
        raise ValueError("malformed cursor")
    return float(at), last_id


def _to_instance(row: Any) -> Instance:
    m = row._mapping
    return Instance(**{name: m[name] for name in _INSTANCE_FIELDS})


def _to_row(instance: Instance) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in _INSTANCE_FIELDS}


def _delivery_row(delivery: Delivery) -> dict[str, Any]:
    return {
        "instance_id": delivery.instance_id,
        "received_at": delivery.received_at,
        "body": delivery.body,
        "headers": delivery.headers,
        "peer": delivery.peer,
        "claim": delivery.claim,
    }
