from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from receiver.reconcile import (
    COMPLETED,
    Fetched,
    FetchFailed,
    GbgState,
    Registered,
    WebhookReceived,
)
from receiver.store import RATE_HEADROOM, Delivery, Store, decode_cursor

NOW = 1_800_000_000.0


def delivery(instance_id: str, at: float = NOW, body: bytes = b"{}") -> Delivery:
    return Delivery(instance_id, at, body, {"Content-Type": "application/json"}, "10.0.0.1", None)


def test_migrate_is_idempotent(store: Store) -> None:
    from receiver.migrations import upgrade

    upgrade(store.engine)
    upgrade(store.engine)
    assert set(sa.inspect(store.engine).get_table_names()) >= {
        "instances",
        "deliveries",
        "events",
        "rate_limits",
        "alembic_version",
    }


def test_registered_instance_round_trips(store: Store) -> None:
    created = store.apply(Registered("a-1", "ref-1"), NOW)
    assert created.created
    again = store.apply(Registered("a-1"), NOW + 1)
    assert not again.created
    assert store.get("a-1") == created.instance
    assert store.get("nope") is None


def test_webhook_delivery_and_effect_commit_together(store: Store) -> None:
    decision = store.record_webhook(delivery("w-1", body=b'{"instanceId":"w-1"}'), NOW)
    assert decision.created
    assert decision.instance.webhook_received_at == NOW
    rows = store.deliveries_for("w-1")
    assert [r["body"] for r in rows] == [b'{"instanceId":"w-1"}']
    assert rows[0]["headers"] == {"Content-Type": "application/json"}


def test_concurrent_webhooks_for_a_new_id_make_one_instance(store: Store) -> None:
    errors: list[BaseException] = []

    def post() -> None:
        try:
            store.record_webhook(delivery("race-1"), NOW)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.deliveries_for("race-1")) == 8
    page, _ = store.list_instances(status=None, limit=10, cursor=None)
    assert [i.instance_id for i in page] == ["race-1"]


def test_each_status_change_is_one_event_with_increasing_seq(store: Store) -> None:
    done = Fetched("x", GbgState(COMPLETED, "Completed"))
    for n in range(3):
        store.apply(Registered(f"e-{n}"), NOW)
        store.apply(Fetched(f"e-{n}", done.state), NOW + 1)
        store.apply(Fetched(f"e-{n}", done.state), NOW + 2)  # no second change
    events = store.events_after(0, 100)
    assert [e["instance_id"] for e in events] == ["e-0", "e-1", "e-2"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert store.events_after(seqs[0], 100)[0]["seq"] == seqs[1]


def test_list_pages_newest_first_with_a_cursor(store: Store) -> None:
    for n in range(5):
        store.apply(Registered(f"p-{n}"), NOW + n)
    store.apply(Fetched("p-4", GbgState(COMPLETED, "Completed")), NOW + 10)
    seen, cursor = [], None
    while True:
        page, cursor = store.list_instances(status=None, limit=2, cursor=cursor)
        seen += [i.instance_id for i in page]
        if cursor is None:
            break
    assert seen == ["p-4", "p-3", "p-2", "p-1", "p-0"]
    done, _ = store.list_instances(status="completed", limit=10, cursor=None)
    assert [i.instance_id for i in done] == ["p-4"]


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "WzEsMiwzXQ", "WyJ4IiwgMV0"])
def test_malformed_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(cursor)


def test_due_instances_are_claimed_once_until_the_lease_expires(store: Store) -> None:
    store.apply(Registered("d-1"), NOW)
    store.apply(Registered("d-2"), NOW + 100)
    due_at = NOW + store.policy.webhook_timeout
    assert store.claim_due("p1", due_at - 1, 10, 60) == []
    first = store.claim_due("p1", due_at, 10, 60)
    assert [i.instance_id for i in first] == ["d-1"]
    assert store.claim_due("p2", due_at + 1, 10, 60) == []  # leased to p1
    assert store.claim("d-1", "op", due_at + 1, 60) is None
    retaken = store.claim_due("p2", due_at + 61, 10, 60)  # p1 died: its lease lapsed
    assert [i.instance_id for i in retaken] == ["d-1"]


def test_applying_a_result_releases_only_our_own_lease(store: Store) -> None:
    store.apply(Registered("l-1"), NOW)
    at = NOW + store.policy.webhook_timeout
    store.claim_due("p1", at, 10, 60)
    store.apply(FetchFailed("l-1", "http_500"), at + 1, lease_owner="someone-else")
    assert store.leases() == [("l-1", "p1", at + 60)]
    store.apply(FetchFailed("l-1", "http_500"), at + 1, lease_owner="p1")
    assert store.leases() == []
    assert store.get("l-1").poll_errors == 2  # type: ignore[union-attr]


def test_release_gives_back_every_lease_of_an_owner(store: Store) -> None:
    for n in range(3):
        store.apply(WebhookReceived(f"r-{n}"), NOW)
    assert len(store.claim_due("p1", NOW + 5, 10, 60)) == 3
    assert store.release("p1") == 3
    assert len(store.claim_due("p2", NOW + 5, 10, 60)) == 3


def test_finished_instances_are_never_due(store: Store) -> None:
    store.apply(Registered("f-1"), NOW)
    store.apply(Fetched("f-1", GbgState(COMPLETED, "Completed")), NOW)
    assert store.claim_due("p1", NOW + 10**6, 10, 60) == []


def test_rate_limit_spaces_fetches_across_callers(store: Store) -> None:
    slots = [store.reserve_fetch(NOW, 20.0) for _ in range(5)]
    spacing = 1 / (20.0 * RATE_HEADROOM)
    assert slots == pytest.approx([NOW + n * spacing for n in range(5)])
    assert store.reserve_fetch(NOW + 10, 20.0) == NOW + 10  # idle time is not banked
    store.pause_fetches(NOW + 30)
    after_pause = [store.reserve_fetch(NOW + 11, 20.0) for _ in range(2)]
    assert after_pause == pytest.approx([NOW + 30, NOW + 30 + spacing])


def test_ttl_selection_finds_only_old_unfinished_instances(store: Store) -> None:
    store.apply(Registered("old"), NOW)
    store.apply(Registered("old-done"), NOW)
    store.apply(Fetched("old-done", GbgState(COMPLETED, "Completed")), NOW)
    store.apply(Registered("young"), NOW + 100)
    assert store.past_ttl(NOW + store.policy.ttl + 1, 10) == ["old"]


def test_purge_keeps_instances_and_events_but_not_old_raw_data(store: Store) -> None:
    store.record_webhook(delivery("old-1", at=NOW - 100), NOW - 100)
    state = GbgState(COMPLETED, "Completed", document={"status": "Completed"})
    store.apply(Fetched("old-1", state), NOW - 90)
    store.record_webhook(delivery("new-1", at=NOW), NOW)
    store.apply(Fetched("new-1", state), NOW)
    assert store.purge(NOW - 50) == (1, 1)
    assert store.deliveries_for("old-1") == []
    assert len(store.deliveries_for("new-1")) == 1
    old = store.get("old-1")
    assert old is not None
    assert (old.state, old.status) == (None, "completed")
    assert store.get("new-1").state == {"status": "Completed"}  # type: ignore[union-attr]
    assert len(store.events_after(0, 10)) == 2


@pytest.mark.postgres
def test_sqlite_store_copies_into_postgres(tmp_path, pg_engine) -> None:  # type: ignore[no-untyped-def]
    from receiver.migrations import upgrade
    from receiver.schedule import Policy
    from tests.conftest import empty_tables

    empty_tables(pg_engine)
    target = Store(pg_engine, Policy())
    source = Store.from_url(f"sqlite:///{tmp_path / 'old.db'}", Policy())
    upgrade(source.engine)
    for n in range(5):
        source.record_webhook(delivery(f"m-{n}"), NOW + n)
        source.apply(Fetched(f"m-{n}", GbgState(COMPLETED, "Completed")), NOW + 10)
    source.reserve_fetch(NOW, 1.0)
    copied = target.copy_from(source, batch=2)
    assert copied == {"instances": 5, "deliveries": 5, "events": 5, "rate_limits": 1}
    assert target.events_after(0, 10) == source.events_after(0, 10)
    assert target.get("m-3") == source.get("m-3")
    target.apply(Registered("after-move"), NOW + 20)
    target.apply(Fetched("after-move", GbgState(COMPLETED, "Completed")), NOW + 21)
    assert target.events_after(5, 10)[0]["seq"] == 6  # the sequence continues
    with pytest.raises(ValueError, match="already has instances"):
        target.copy_from(source)
    source.engine.dispose()


def test_a_batch_folds_duplicates_in_order(store: Store) -> None:
    batch = [
        (delivery("b-1", at=NOW), NOW),
        (delivery("b-2", at=NOW), NOW),
        (delivery("b-1", at=NOW + 1), NOW + 1),
    ]
    first, second, again = store.record_webhooks(batch)
    assert (first.created, second.created, again.created) == (True, True, False)
    assert again.instance.webhook_received_at == NOW + 1
    assert store.get("b-1") == again.instance
    assert len(store.deliveries_for("b-1")) == 2
