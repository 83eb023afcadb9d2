"""The state store: the only package with SQL (SQLAlchemy Core, no ORM).

Adapters by responsibility: ``schema`` (shared with Alembic), ``engine`` (dialects and
transactions; ``writerqueue``: SQLite's writers take turns), ``instances`` (rows,
claims, leases), ``inbox`` (webhook deliveries; ``inboxlink``: the web workers' line to
the host's inbox writer), ``events`` (the status-change log), ``outbox`` (messages to
the application), ``rate`` (the shared fetch rate), ``attempts`` (fetches and forwards,
for timelines), ``sessions`` (dashboard sign-outs), ``workers`` (heartbeats), ``stats``,
``copy`` and ``purging`` (retention's batch deletes).
``Store`` runs each single-step operation in its own transaction; a use case that must
lock, decide and save in one transaction calls ``transaction`` with the adapter
functions instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from receiver.domain.model import Instance
from receiver.store import (
    attempts,
    events,
    idempotency,
    inbox,
    instances,
    outbox,
    rate,
    sessions,
    stats,
    workers,
)
from receiver.store.engine import Database
from receiver.store.groupcommit import GroupCommitter
from receiver.store.inbox import Delivery
from receiver.store.inboxlink import InboxLink
from receiver.store.outbox import Message

_T = TypeVar("_T")
PURGE_BATCH = 1000

__all__ = ["Database", "Delivery", "Message", "Store"]


class Store:
    """One database and the operations the service runs on it."""

    def __init__(self, db: Database, *, inbox_socket: str = "") -> None:
        self.db = db
        self.engine = db.engine
        self._inbox = GroupCommitter(self._append)
        self._writer = InboxLink(inbox_socket) if inbox_socket else None

    @classmethod
    def from_url(
        cls, url: str, *, connections: int = 5, pooled: bool = False, inbox_socket: str = ""
    ) -> Store:
        db = Database.from_url(url, connections=connections, pooled=pooled)
        return cls(db, inbox_socket=inbox_socket)

    def transaction(self, work: Callable[[Connection], _T]) -> _T:
        return self.db.transaction(work)

    # -- the inbox -------------------------------------------------------------------------

    def append_delivery(self, delivery: Delivery) -> None:
        """Commit one delivery to the inbox: through the host's inbox writer where there is
        one (``inboxlink``), else here, concurrent callers sharing a commit."""
        if self._writer is None or not self._writer.append(delivery):
            self._inbox.submit(delivery)

    def append_deliveries(self, batch: list[Delivery]) -> None:
        """Commit deliveries to the inbox in one statement (the inbox writer's commit)."""
        with self.db.cursor() as cursor:
            inbox.append(cursor, self.engine.dialect.paramstyle, batch)

    def _append(self, batch: list[tuple[Delivery]]) -> list[None]:
        self.append_deliveries([d for (d,) in batch])
        return [None] * len(batch)

    def close(self) -> None:
        """Let go of the inbox writer's lines and the database's connections."""
        if self._writer is not None:
            self._writer.close()
        self.db.close()

    def deliveries_for(self, instance_id: str, **page: Any) -> list[dict[str, Any]]:
        """``page``: after (an id), limit, newest (see ``inbox.for_instance``)."""
        with self.db.read() as conn:
            return inbox.for_instance(conn, instance_id, **page)

    def waiting_for(self, instance_id: str) -> int:
        with self.db.read() as conn:
            return inbox.waiting_for(conn, instance_id)

    def waiting_deliveries(self, limit: int) -> list[int]:
        with self.db.read() as conn:
            return inbox.waiting_ids(conn, limit)

    def fold_failed(self, delivery_id: int, error: str, now: float, tries: int) -> bool:
        with self.db.write() as conn:
            return inbox.fold_failed(conn, delivery_id, error, now, tries)

    def quarantined(self, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return inbox.quarantined(conn, after, limit)

    def refold(self, delivery_id: int | None = None) -> int:
        with self.db.write() as conn:
            return inbox.refold(conn, delivery_id)

    # -- reads -------------------------------------------------------------------------------

    def get(self, instance_id: str) -> Instance | None:
        with self.db.read() as conn:
            return instances.get(conn, instance_id)

    def page(self, *, limit: int, after: tuple[float, str] | None, **where: Any) -> list[Instance]:
        """A page of instances; ``where``: status, reference, given_up (None: any)."""
        with self.db.read() as conn:
            return instances.page(conn, limit=limit, after=after, **where)

    def events_after(self, seq: int, limit: int) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return events.after(conn, seq, limit)

    def events_for(self, instance_id: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return events.for_instance(conn, instance_id)

    def history(self, instance_id: str) -> dict[str, list[dict[str, Any]]]:
        """What an instance's timeline is made of, read at one moment: its latest
        deliveries, its status changes and its latest fetch and forward attempts."""
        with self.db.read() as conn:
            return {
                "deliveries": inbox.for_instance(conn, instance_id, limit=100, newest=True),
                "events": events.for_instance(conn, instance_id),
                "attempts": attempts.for_instance(conn, instance_id),
            }

    def snapshot(self, now: float) -> dict[str, Any]:
        with self.db.read() as conn:
            return stats.snapshot(conn, now)

    def endings_by_hour(self, since: float) -> list[tuple[int, str, int]]:
        with self.db.read() as conn:
            return events.endings_by_hour(conn, since)

    def past_ttl(self, before: float, limit: int) -> list[str]:
        with self.db.read() as conn:
            return instances.past_ttl(conn, before, limit)

    def leases(self) -> list[tuple[str, str, float]]:
        with self.db.read() as conn:
            return instances.leases(conn)

    # -- claims and the shared rate ------------------------------------------------------------

    def claim_due(self, owner: str, now: float, limit: int, lease: float) -> list[Instance]:
        with self.db.write() as conn:
            return instances.claim_due(conn, owner, now, limit, lease)

    def claim(self, instance_id: str, owner: str, now: float, lease: float) -> bool:
        with self.db.write() as conn:
            return instances.claim(conn, instance_id, owner, now, lease)

    def release(self, owner: str, instance_id: str | None = None) -> int:
        with self.db.write() as conn:
            return instances.release(conn, owner, instance_id)

    def renew(self, owner: str, until: float) -> int:
        with self.db.write() as conn:
            return instances.renew(conn, owner, until)

    def resume_given_up(self, now: float, instance_id: str | None = None) -> int:
        with self.db.write() as conn:
            return instances.resume_given_up(conn, now, instance_id)

    def gbg_failed(self, now: float, pause_for: Callable[[int], float | None]) -> tuple[int, bool]:
        with self.db.write() as conn:
            return rate.failed(conn, now, pause_for)

    def gbg_recovered(self) -> int:
        with self.db.write() as conn:
            return rate.recovered(conn)

    def fetch_standing(self) -> tuple[float, int]:
        with self.db.read() as conn:
            return rate.standing(conn)

    def pause_fetches(self, until: float) -> None:
        with self.db.write() as conn:
            rate.pause(conn, until)

    # -- the outbox ---------------------------------------------------------------------------

    def claim_messages(self, owner: str, now: float, limit: int, lease: float) -> list[Message]:
        with self.db.write() as conn:
            return outbox.claim(conn, owner, now, limit, lease)

    def record_attempt(
        self, seq: int, owner: str, *, now: float, error: str | None, next_attempt_at: float | None
    ) -> bool:
        with self.db.write() as conn:
            return outbox.record(
                conn, seq, owner, now=now, error=error, next_attempt_at=next_attempt_at
            )

    def release_messages(self, owner: str) -> int:
        with self.db.write() as conn:
            return outbox.release(conn, owner)

    def replay_message(self, seq: int, now: float) -> Message | None:
        with self.db.write() as conn:
            return outbox.replay(conn, seq, now)

    def messages(
        self, *, status: str | None, limit: int, after: int = 0, instance_id: str | None = None
    ) -> list[Message]:
        with self.db.read() as conn:
            return outbox.page(
                conn, status=status, limit=limit, after=after, instance_id=instance_id
            )

    # -- idempotency keys of journey starts ------------------------------------------------

    def claim_key(self, key: str, body_hash: str, now: float) -> tuple[str, str | None] | None:
        return self.db.transaction(lambda conn: idempotency.claim(conn, key, body_hash, now))

    def complete_key(self, key: str, instance_id: str) -> None:
        with self.db.write() as conn:
            idempotency.complete(conn, key, instance_id)

    def give_back_key(self, key: str) -> None:
        with self.db.write() as conn:
            idempotency.give_back(conn, key)

    # -- dashboard sessions -------------------------------------------------------------------

    def revoke_session(self, sid: str, until: float) -> None:
        with self.db.write() as conn:
            sessions.revoke(conn, sid, until)

    def session_revoked(self, sid: str) -> bool:
        with self.db.read() as conn:
            return sessions.revoked(conn, sid)

    # -- the workers' heartbeats -------------------------------------------------------------

    def heartbeat(self, owner: str, now: float, skew: float, *, stopped: bool = False) -> None:
        with self.db.write() as conn:
            workers.beat(conn, owner, now, skew, stopped=stopped)

    def workers(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return workers.seen(conn)

    # -- retention and erasure -------------------------------------------------------------

    def purge(self, before: float) -> tuple[int, int]:
        """Delete folded deliveries and finished messages, and forget personal data, older
        than ``before``; answer (rows deleted, instances forgotten).

        Rows go in batches, each its own short transaction, so a long purge never
        keeps a webhook waiting for the writer.
        """
        deleted = 0
        batches = (
            inbox.purge,
            outbox.purge,
            attempts.purge,
            sessions.purge,
            idempotency.purge,
            workers.purge,
        )
        for purge_batch in batches:
            while True:
                with self.db.write() as conn:
                    batch = purge_batch(conn, before, PURGE_BATCH)
                deleted += batch
                if batch < PURGE_BATCH:
                    break
        with self.db.write() as conn:
            forgotten = instances.forget(conn, before)
        self.db.compact()
        return deleted, forgotten
