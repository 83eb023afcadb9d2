"""Erase means everything: after DELETE/erase no personal datum of the instance is left
in any table, whatever its messages to the application had come to."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from receiver import usecases
from receiver.domain.model import TtlPassed
from receiver.services import Services
from receiver.store import Message
from receiver.store.schema import metadata
from receiver.testing.simulator import Simulator
from receiver.web import create_app
from tests.conftest import API_TOKEN, FakeClock
from tests.test_forwarding import forwarding_on
from tests.test_poller import poll_once, webhook

REFERENCE = "ORDER-jane.doe@example.com"
OUTCOME = "Zq7x Outcome"


def stored_bytes(services: Services) -> bytes:
    """Every byte the store keeps: SQLite's files, or every row PostgreSQL holds."""
    url = services.store.engine.url
    if url.get_backend_name() == "sqlite":
        folder = Path(str(url.database)).parent
        return b"".join(p.read_bytes() for p in sorted(folder.glob("receiver.db*")))
    with services.store.engine.connect() as conn:
        return "\n".join(
            str(row) for table in metadata.sorted_tables for row in conn.execute(table.select())
        ).encode()


def settle(services: Services, message: Message, how: str) -> None:
    """Record the claimed ``message``'s attempt as delivered, failed for good, or failed
    and due again in a minute (pending)."""
    now = services.clock()
    error = None if how == "delivered" else "http_500"
    again = now + 60 if how == "pending" else None
    services.store.record_attempt(message.seq, "w", now=now, error=error, next_attempt_at=again)


def test_erase_leaves_nothing_personal_in_any_message_status(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    forwarding_on(services)
    store = services.store
    started = usecases.start_journey(services, "age-check@latest", {}, REFERENCE).instance
    url = started.instance_url
    assert url is not None
    clock.advance(services.settings.instance_ttl + 1)
    usecases.observe(services, TtlPassed(started.instance_id), clock())  # a message: expired
    sim.set_status(started.instance_id, "Completed", OUTCOME)
    webhook(services, started.instance_id)
    clock.advance(1)
    poll_once(services)  # and a message: completed, with the outcome
    for other in ("e-2", "e-3"):
        usecases.register(services, other, REFERENCE)
        sim.set_status(other, "Completed", OUTCOME)
        webhook(services, other)
    clock.advance(1)
    poll_once(services)
    [superseded, pending, failed] = store.claim_messages("w", clock(), 10, 30)
    for message, how in ((superseded, "failed"), (failed, "failed"), (pending, "pending")):
        settle(services, message, how)
    [delivered] = store.claim_messages("w", clock(), 10, 30)  # after the failed one
    settle(services, delivered, "delivered")
    assert sorted(m.status for m in store.messages(status=None, limit=9)) == [
        "delivered",
        "failed",
        "pending",
        "superseded",
    ]
    before = stored_bytes(services)
    assert all(s in before for s in (REFERENCE.encode(), url.encode(), OUTCOME.encode()))

    client = create_app(services=services).test_client()
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    answer = client.delete(f"/api/v1/instances/{started.instance_id}", headers=bearer)
    assert answer.status_code == 200
    assert (answer.get_json()["reference"], answer.get_json()["instanceUrl"]) == (None, None)
    for other in ("e-2", "e-3"):
        assert usecases.erase(services, other) is not None

    after = stored_bytes(services)
    for personal in (REFERENCE, url, OUTCOME):
        assert personal.encode() not in after, personal
    assert store.messages(status=None, limit=9) == []
    outbox = client.get("/api/v1/outbox", headers=bearer).get_json()
    assert outbox["messages"] == []
    for instance_id in (started.instance_id, "e-2", "e-3"):  # the status stays
        instance = store.get(instance_id)
        assert instance is not None
        assert instance.status in ("completed", "expired")
    with services.store.engine.connect() as conn:  # and so do the events
        assert conn.execute(
            sa.select(sa.func.count()).select_from(metadata.tables["events"])
        ).scalar()


def test_retention_purges_failed_messages_as_well(
    services: Services, sim: Simulator, clock: FakeClock
) -> None:
    forwarding_on(services)
    store = services.store
    for instance_id in ("p-1", "p-2", "p-3"):
        sim.set_status(instance_id, "Completed", OUTCOME)
        webhook(services, instance_id)
    clock.advance(1)
    poll_once(services)
    failed, delivered, pending = store.claim_messages("w", clock(), 10, 30)
    for message, how in ((failed, "failed"), (delivered, "delivered"), (pending, "pending")):
        settle(services, message, how)
    clock.advance(services.settings.retention_days * 86400 + 1)
    usecases.purge(services)
    assert [m.seq for m in store.messages(status=None, limit=9)] == [pending.seq]
