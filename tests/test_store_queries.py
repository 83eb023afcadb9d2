"""The store's reads and small writes, one by one, at their edges: the event log's pages
and hourly endings, the inbox's quarantine, refolds, counts, erase and purge."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from receiver.domain.model import Event
from receiver.store import Store, events, inbox, outbox, schema
from tests.conftest import empty_tables
from tests.test_store import NOW, delivery

HOUR = 3600.0


def log(store: Store, *changes: tuple[str, str, str, float]) -> list[int]:
    """Append (instance id, status, source, at) events; answer their seqs."""
    new = [Event(i, status, "in_progress", source, at) for i, status, source, at in changes]
    return store.transaction(lambda conn: events.append(conn, new))


def test_events_after_a_seq_come_in_order_a_page_at_a_time(store: Store) -> None:
    seqs = log(store, *[(f"e-{n}", "completed", "poll", NOW + n) for n in range(5)])
    first = store.events_after(0, 2)
    assert [e["seq"] for e in first] == seqs[:2]
    rest = store.events_after(seqs[1], 10)
    assert [e["seq"] for e in rest] == seqs[2:]
    assert [e["instance_id"] for e in rest] == ["e-2", "e-3", "e-4"]
    assert store.events_after(seqs[-1], 10) == []


def test_endings_by_hour_count_completed_and_failed_from_since_on(store: Store) -> None:
    hour = 500_000  # whole hours since the epoch
    start = hour * HOUR
    log(
        store,
        ("h-1", "completed", "webhook", start),  # exactly at ``since``: counted
        ("h-2", "failed", "webhook", start + 10),
        ("h-3", "completed", "poll", start + HOUR + 1),
        ("h-7", "failed", "poll", start + 2 * HOUR - 60),  # late in its hour: not rounded up
        ("h-4", "in_progress", "poll", start + 20),  # not an ending
        ("h-5", "expired", "poll", start + 30),  # not an ending either
        ("h-6", "completed", "webhook", start - 1),  # before ``since``
    )
    assert sorted(store.endings_by_hour(start)) == [
        (hour, "webhook", 2),
        (hour + 1, "poll", 2),
    ]


def test_endings_by_source_count_completed_and_failed_only(store: Store) -> None:
    log(
        store,
        ("s-1", "completed", "webhook", NOW),
        ("s-2", "failed", "webhook", NOW),
        ("s-3", "completed", "poll", NOW),
        ("s-4", "expired", "poll", NOW),
        ("s-5", "in_progress", "api", NOW),
    )
    assert store.transaction(events.endings_by_source) == {"webhook": 2, "poll": 1}


def quarantine(store: Store, *instance_ids: str) -> list[int]:
    """Append a delivery for each instance and set it aside at once; answer the ids."""
    for instance_id in instance_ids:
        store.append_delivery(delivery(instance_id))
    ids = store.waiting_deliveries(100)[-len(instance_ids) :]
    for delivery_id in ids:
        assert store.fold_failed(delivery_id, "ValueError: bad", NOW, tries=1)
    return ids


def test_quarantined_deliveries_are_listed_oldest_first_after_an_id(store: Store) -> None:
    store.append_delivery(delivery("fine"))  # in the inbox: not listed
    ids = quarantine(store, "q-1", "q-2", "q-3")
    assert [d["id"] for d in store.quarantined(limit=2)] == ids[:2]
    assert [d["id"] for d in store.quarantined(after=ids[0])] == ids[1:]
    [last] = store.quarantined(after=ids[1])
    assert (last["instance_id"], last["fold_tries"], last["fold_error"]) == (
        "q-3",
        1,
        "ValueError: bad",
    )


def test_a_refolded_delivery_starts_again_with_no_tries_and_no_reason(store: Store) -> None:
    first, second = quarantine(store, "r-1", "r-2")
    assert store.refold(first) == 1
    assert store.refold(first) == 1  # asked again before it was folded: still back, 1
    assert store.waiting_for("r-1") == 1
    [back] = store.deliveries_for("r-1")
    assert (back["fold_tries"], back["fold_error"], back["quarantined_at"]) == (0, None, None)
    assert store.waiting_for("r-2") == 0  # set aside: not waiting
    assert [d["id"] for d in store.quarantined()] == [second]
    # Back with fresh tries: one more failure does not set it aside when two are allowed.
    assert not store.fold_failed(first, "ValueError: again", NOW, tries=2)
    assert store.refold(12345) == 0  # no such delivery
    assert store.refold() == 1  # every one set aside: r-2
    assert store.waiting_for("r-2") == 1


def test_a_refold_of_a_folded_delivery_answers_zero(store: Store) -> None:
    [only] = quarantine(store, "f-1")
    store.refold(only)
    folded(store, only)
    assert store.refold(only) == 0
    assert store.waiting_for("f-1") == 0


def folded(store: Store, *delivery_ids: int) -> None:
    store.transaction(lambda conn: inbox.mark_folded(conn, list(delivery_ids), NOW))


def test_waiting_for_counts_only_the_instances_unfolded_deliveries(store: Store) -> None:
    for _ in range(3):
        store.append_delivery(delivery("w-1"))
    store.append_delivery(delivery("w-2"))
    [first, *_] = store.waiting_deliveries(10)
    folded(store, first)
    assert (store.waiting_for("w-1"), store.waiting_for("w-2")) == (2, 1)


def test_purge_deletes_folded_deliveries_that_arrived_strictly_before(store: Store) -> None:
    store.append_delivery(delivery("p-1", at=NOW - 10))
    store.append_delivery(delivery("p-2", at=NOW))  # exactly at ``before``: kept
    store.append_delivery(delivery("p-3", at=NOW - 10))  # not folded: kept
    ids = store.waiting_deliveries(10)
    folded(store, *ids[:2])
    assert store.purge(NOW)[0] == 1
    assert [d["instance_id"] for d in store.deliveries_for("p-1")] == []
    assert len(store.deliveries_for("p-2")) == len(store.deliveries_for("p-3")) == 1


def test_an_inbox_purge_goes_a_batch_at_a_time(store: Store) -> None:
    for n in range(3):
        store.append_delivery(delivery(f"b-{n}", at=NOW - 10))
    folded(store, *store.waiting_deliveries(10))
    assert store.transaction(lambda conn: inbox.purge(conn, NOW, 2)) == 2
    assert store.transaction(lambda conn: inbox.purge(conn, NOW, 2)) == 1


def messages(store: Store, *spec: tuple[int, str, float, str]) -> None:
    """Outbox messages (seq, instance id, written at, status)."""

    def write(conn: Any) -> None:
        for seq, instance_id, at, status in spec:
            outbox.enqueue(conn, [(seq, instance_id, "{}")], at)
            done = schema.outbox.update().where(schema.outbox.c.seq == seq).values(status=status)
            conn.execute(done)

    store.transaction(write)


def test_erase_deletes_that_instances_messages_in_every_status_and_no_other(
    store: Store,
) -> None:
    messages(
        store,
        (1, "x-1", NOW, "pending"),
        (2, "x-1", NOW, "delivered"),
        (3, "x-1", NOW, "failed"),
        (4, "x-2", NOW, "pending"),
    )
    assert store.transaction(lambda conn: outbox.erase(conn, "x-1")) == 3
    assert [m.seq for m in store.messages(status=None, limit=9)] == [4]


def test_messages_come_after_a_seq_a_page_at_a_time(store: Store) -> None:
    messages(store, *((seq, f"m-{seq}", NOW, "pending") for seq in (1, 2, 3, 4)))
    assert [m.seq for m in store.messages(status=None, limit=2, after=1)] == [2, 3]


def test_purge_deletes_done_messages_written_strictly_before(store: Store) -> None:
    messages(
        store,
        (1, "y-1", NOW - 10, "delivered"),
        (2, "y-1", NOW - 10, "failed"),
        (3, "y-1", NOW - 10, "superseded"),
        (4, "y-2", NOW - 10, "pending"),  # still to be sent: kept
        (5, "y-3", NOW, "delivered"),  # written exactly at ``before``: kept
    )
    assert store.transaction(lambda conn: outbox.purge(conn, NOW, 2)) == 2  # a batch
    assert store.transaction(lambda conn: outbox.purge(conn, NOW, 9)) == 1
    assert [m.seq for m in store.messages(status=None, limit=9)] == [4, 5]


def claimed(store: Store, owner: str, at: float, limit: int = 9) -> list[int]:
    return [m.seq for m in store.claim_messages(owner, at, limit, 30)]


def test_claims_come_in_bounded_batches_and_a_lease_lapses_at_its_end(store: Store) -> None:
    messages(store, *[(n, f"c-{n}", NOW, "pending") for n in (1, 2, 3)])
    assert claimed(store, "a", NOW, limit=2) == [1, 2]
    assert claimed(store, "b", NOW + 29.9) == [3]
    assert claimed(store, "c", NOW + 30) == [1, 2]  # a's lease ended exactly now


def test_a_release_lets_go_of_ones_own_leases_only(store: Store) -> None:
    messages(store, (1, "l-1", NOW, "pending"), (2, "l-2", NOW, "pending"))
    assert claimed(store, "a", NOW, limit=1) == [1]
    assert claimed(store, "b", NOW) == [2]
    assert store.release_messages("a") == 1
    assert claimed(store, "c", NOW) == [1]  # b still holds 2


def message(store: Store, seq: int) -> Any:
    [found] = [m for m in store.messages(status=None, limit=99) if m.seq == seq]
    return found


def test_a_delivery_is_recorded_with_its_attempt_and_frees_the_lease(store: Store) -> None:
    messages(store, (1, "d-1", NOW, "pending"))
    claimed(store, "a", NOW)
    assert store.record_attempt(1, "a", now=NOW + 1, error=None, next_attempt_at=None)
    done = message(store, 1)
    assert (done.status, done.attempts, done.last_attempt_at, done.delivered_at) == (
        "delivered",
        1,
        NOW + 1,
        NOW + 1,
    )
    assert (done.next_attempt_at, done.last_error) == (None, None)
    assert claimed(store, "b", NOW + 2) == []  # delivered: nothing to claim
    [attempt] = store.history("d-1")["attempts"]
    assert (attempt["kind"], attempt["outcome"], attempt["seq"], attempt["at"]) == (
        "forward",
        "delivered",
        1,
        NOW + 1,
    )


def test_errors_are_kept_short_and_a_last_failure_is_recorded_as_failed(store: Store) -> None:
    messages(store, (1, "f-1", NOW, "pending"))
    claimed(store, "a", NOW)
    long_error = "E" * 300
    assert store.record_attempt(1, "a", now=NOW, error=long_error, next_attempt_at=NOW + 5)
    claimed(store, "a", NOW + 5)
    assert store.record_attempt(1, "a", now=NOW + 5, error=long_error, next_attempt_at=None)
    failed = message(store, 1)
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 2, "E" * 256)
    outcomes = [a["outcome"] for a in store.history("f-1")["attempts"]]
    assert outcomes == ["E" * 32, "failed"]


def test_a_delivery_supersedes_the_earlier_failed_messages_of_its_instance_only(
    store: Store,
) -> None:
    messages(
        store,
        (1, "s-1", NOW, "failed"),
        (2, "s-2", NOW, "failed"),  # another instance's
        (3, "s-1", NOW, "pending"),
        (4, "s-1", NOW, "failed"),  # a later one (after a replay, say)
    )
    claimed(store, "a", NOW)
    assert store.record_attempt(3, "a", now=NOW, error=None, next_attempt_at=None)
    statuses = {m.seq: m.status for m in store.messages(status=None, limit=9)}
    assert statuses == {1: "superseded", 2: "failed", 3: "delivered", 4: "failed"}


def test_the_outbox_depth_counts_by_status_and_dates_the_oldest_pending(store: Store) -> None:
    messages(
        store,
        (1, "o-1", NOW - 10, "delivered"),
        (2, "o-2", NOW - 5, "pending"),
        (3, "o-3", NOW - 1, "pending"),
    )
    by_status, oldest = store.transaction(outbox.depth)
    assert by_status == {"pending": 2, "delivered": 1, "failed": 0, "superseded": 0}
    assert oldest == NOW - 5


def test_a_released_message_is_no_longer_on_its_way(store: Store) -> None:
    messages(store, (1, "w-1", NOW, "failed"), (2, "w-1", NOW, "pending"))
    assert claimed(store, "a", NOW) == [2]
    store.release_messages("a")  # a worker stopping: 2 waits for the next one
    replayed = store.replay_message(1, NOW)  # not refused as "on its way"
    assert replayed is not None
    assert replayed.status == "pending"


@pytest.mark.postgres
def test_on_postgresql_events_are_appended_one_transaction_at_a_time(
    pg_engine: sa.Engine,
) -> None:
    # Sequence values are handed out before commit: a second writer must wait for the
    # first's commit, or a reader could pass the first's seq before it is visible.
    empty_tables(pg_engine)
    event = Event("o-1", "completed", "in_progress", "poll", NOW)
    with pg_engine.connect() as first, pg_engine.connect() as second, first.begin():
        events.append(first, [event])
        with second.begin():
            second.execute(sa.text("SET LOCAL lock_timeout = '100ms'"))
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                events.append(second, [event])
    with pg_engine.begin() as conn:
        assert len(events.after(conn, 0, 10)) == 1  # the second never got in
