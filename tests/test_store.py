from __future__ import annotations

import contextlib
import threading
import time

import pytest
import sqlalchemy as sa

from receiver import usecases
from receiver.domain.model import (
    COMPLETED,
    Fetched,
    FetchFailed,
    GbgState,
    Registered,
    WebhookReceived,
)
from receiver.domain.schedule import Policy
from receiver.errors import StoreUnavailable
from receiver.services import Services
from receiver.store import PURGE_BATCH, Delivery, Store, engine, schema, writerqueue
from receiver.store.copy import copy_from
from receiver.store.engine import Database
from receiver.store.rate import HEADROOM, STALE, FetchSlots
from receiver.web.reads import decode_cursor
from tests.conftest import PG_URL, apply

NOW = 1_800_000_000.0
POLICY = Policy()


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
    created = apply(store, Registered("a-1", "ref-1"), NOW)
    assert created.created
    again = apply(store, Registered("a-1"), NOW + 1)
    assert not again.created
    assert store.get("a-1") == created.instance
    assert store.get("nope") is None


def test_the_inbox_statement_commits_alone_and_leaves_the_pool_transactional(
    store: Store,
) -> None:
    store.append_delivery(delivery("ac-1"))

    def half_done(conn: sa.Connection) -> None:  # a transaction that fails half-way
        conn.execute(schema.deliveries.delete())
        raise RuntimeError("stop")

    for _ in range(3):  # every pooled connection the append could have used
        with pytest.raises(RuntimeError):
            store.db.transaction(half_done)
    assert [r["instance_id"] for r in store.deliveries_for("ac-1")] == ["ac-1"]


def test_a_delivery_waits_in_the_inbox_until_folded(store_services: Services) -> None:
    store = store_services.store
    store.append_delivery(delivery("w-1", body=b'{"instanceId":"w-1"}'))
    rows = store.deliveries_for("w-1")
    assert [(r["body"], r["folded_at"]) for r in rows] == [(b'{"instanceId":"w-1"}', None)]
    assert rows[0]["headers"] == {"Content-Type": "application/json"}
    assert store.get("w-1") is None
    assert store.snapshot(NOW + 2)["inbox_depth"] == 1
    assert store.snapshot(NOW + 2)["inbox_oldest_age"] == 2
    assert usecases.fold_inbox(store_services) == 1
    folded = store.get("w-1")
    assert folded is not None
    assert (folded.webhook_received_at, folded.source) == (NOW, "webhook")
    assert folded.next_poll_at == NOW + POLICY.confirm_delay  # from arrival, not from folding
    assert store.deliveries_for("w-1")[0]["folded_at"] == store_services.clock()
    assert usecases.fold_inbox(store_services) == 0  # never folded twice
    assert store.snapshot(NOW + 2)["inbox_depth"] == 0


def test_concurrent_webhooks_for_a_new_id_make_one_instance(store_services: Services) -> None:
    store = store_services.store
    errors: list[BaseException] = []

    def post() -> None:
        try:
            store.append_delivery(delivery("race-1"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.deliveries_for("race-1")) == 8
    assert usecases.fold_inbox(store_services) == 8
    page = store.page(status=None, limit=10, after=None)
    assert [i.instance_id for i in page] == ["race-1"]


def test_each_status_change_is_one_event_with_increasing_seq(store: Store) -> None:
    done = Fetched("x", GbgState(COMPLETED, "Completed"))
    for n in range(3):
        apply(store, Registered(f"e-{n}"), NOW)
        apply(store, Fetched(f"e-{n}", done.state), NOW + 1)
        apply(store, Fetched(f"e-{n}", done.state), NOW + 2)  # no second change
    events = store.events_after(0, 100)
    assert [e["instance_id"] for e in events] == ["e-0", "e-1", "e-2"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert store.events_after(seqs[0], 100)[0]["seq"] == seqs[1]


def test_list_pages_newest_first_with_a_cursor(store: Store) -> None:
    for n in range(5):
        apply(store, Registered(f"p-{n}"), NOW + n)
    apply(store, Fetched("p-4", GbgState(COMPLETED, "Completed")), NOW + 10)
    seen: list[str] = []
    after = None
    while page := store.page(status=None, limit=2, after=after):
        seen += [i.instance_id for i in page]
        after = (page[-1].registered_at, page[-1].instance_id)
    assert seen == ["p-4", "p-3", "p-2", "p-1", "p-0"]
    done = store.page(status="completed", limit=10, after=None)
    assert [i.instance_id for i in done] == ["p-4"]


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "WzEsMiwzXQ", "WyJ4IiwgMV0"])
def test_malformed_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(cursor)


def test_due_instances_are_claimed_once_until_the_lease_expires(store: Store) -> None:
    apply(store, Registered("d-1"), NOW)
    apply(store, Registered("d-2"), NOW + 100)
    due_at = NOW + POLICY.webhook_timeout
    assert store.claim_due("p1", due_at - 1, 10, 60) == []
    first = store.claim_due("p1", due_at, 10, 60)
    assert [i.instance_id for i in first] == ["d-1"]
    assert store.claim_due("p2", due_at + 1, 10, 60) == []  # leased to p1
    assert store.claim("d-1", "op", due_at + 1, 60) is False
    retaken = store.claim_due("p2", due_at + 61, 10, 60)  # p1 died: its lease lapsed
    assert [i.instance_id for i in retaken] == ["d-1"]


def test_a_result_is_applied_only_under_its_own_lease_and_releases_it(store: Store) -> None:
    apply(store, Registered("l-1"), NOW)
    at = NOW + POLICY.webhook_timeout
    store.claim_due("p1", at, 10, 60)
    # A worker whose lease lapsed (someone else holds it now) writes nothing.
    lost = apply(store, FetchFailed("l-1", "http_500"), at + 1, lease_owner="someone-else")
    assert lost.event is None
    assert lost.instance.poll_errors == 0
    assert store.leases() == [("l-1", "p1", at + 60)]
    assert store.get("l-1").poll_errors == 0  # type: ignore[union-attr]
    apply(store, FetchFailed("l-1", "http_500"), at + 1, lease_owner="p1")
    assert store.leases() == []
    assert store.get("l-1").poll_errors == 1  # type: ignore[union-attr]


def test_release_gives_back_every_lease_of_an_owner(store: Store) -> None:
    for n in range(3):
        apply(store, WebhookReceived(f"r-{n}"), NOW)
    assert len(store.claim_due("p1", NOW + 5, 10, 60)) == 3
    assert store.release("p1") == 3
    assert len(store.claim_due("p2", NOW + 5, 10, 60)) == 3


def test_finished_instances_are_never_due(store: Store) -> None:
    apply(store, Registered("f-1"), NOW)
    apply(store, Fetched("f-1", GbgState(COMPLETED, "Completed")), NOW)
    assert store.claim_due("p1", NOW + 10**6, 10, 60) == []


def test_rate_limit_spaces_fetches_across_callers(store: Store) -> None:
    shared = FetchSlots(store.db, 20.0)
    slots = [shared.take(lambda: NOW) for _ in range(5)]
    spacing = 1 / (20.0 * HEADROOM)
    assert slots == pytest.approx([NOW + n * spacing for n in range(5)])
    assert shared.take(lambda: NOW + 10) == NOW + 10  # idle time is not banked
    store.pause_fetches(NOW + 30)
    after_pause = [shared.take(lambda: NOW + 11) for _ in range(2)]
    assert after_pause == pytest.approx([NOW + 30, NOW + 30 + spacing])


def test_threads_waiting_together_share_one_reservation(store: Store) -> None:
    shared = FetchSlots(store.db, 20.0)
    spacing = 1 / (20.0 * HEADROOM)
    write = store.db.write
    reservations = []

    @contextlib.contextmanager
    def slow_write():  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 5
        while shared._waiting < 4 and time.monotonic() < deadline:
            time.sleep(0.001)  # the first reservation begins once all four wait
        reservations.append(shared._waiting)
        with write() as conn:
            yield conn

    store.db.write = slow_write  # type: ignore[method-assign]
    taken: list[float] = []
    threads = [
        threading.Thread(target=lambda: taken.append(shared.take(lambda: NOW))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reservations == [4]  # one UPDATE of the shared row for four fetches
    assert sorted(taken) == pytest.approx([NOW + n * spacing for n in range(4)])


def test_a_slot_whose_time_passed_is_dropped_not_used_late(store: Store) -> None:
    shared = FetchSlots(store.db, 20.0)
    shared._slots.extend([NOW, NOW + 0.01])  # reserved earlier, nobody took them
    assert shared.take(lambda: NOW + 0.01 + STALE + 0.001) == NOW + 0.01 + STALE + 0.001


def test_ttl_selection_finds_only_old_unfinished_instances(store: Store) -> None:
    apply(store, Registered("old"), NOW)
    apply(store, Registered("old-done"), NOW)
    apply(store, Fetched("old-done", GbgState(COMPLETED, "Completed")), NOW)
    apply(store, Registered("young"), NOW + 100)
    assert store.past_ttl(NOW + 1, 10) == ["old"]


def test_renewing_keeps_an_owners_leases_from_lapsing(store: Store) -> None:
    for n in range(2):
        apply(store, WebhookReceived(f"n-{n}"), NOW)
    store.claim_due("p1", NOW + 5, 10, 60)
    assert store.renew("p1", NOW + 100) == 2
    assert store.claim_due("p2", NOW + 70, 10, 60) == []  # past the first lease, still held
    assert sorted(until for _, _, until in store.leases()) == [NOW + 100, NOW + 100]


def test_purge_in_batches_deletes_every_old_folded_delivery(store_services: Services) -> None:
    store = store_services.store
    for n in range(PURGE_BATCH + 5):
        store.append_delivery(delivery(f"b-{n % 7}", at=NOW - 100))
    while usecases.fold_inbox(store_services):
        pass
    assert store.purge(NOW - 50)[0] == PURGE_BATCH + 5
    assert all(store.deliveries_for(f"b-{n}") == [] for n in range(7))


def test_a_writer_that_cannot_get_its_turn_gets_a_503_not_a_hang(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(writerqueue, "WRITE_WAIT", 0.3)
    db = Database.from_url(f"sqlite:///{tmp_path / 'w.db'}")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write():
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(5)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable), db.write():
            pass
        assert time.monotonic() - started < 2
    finally:
        release.set()
        holder.join()
    db.engine.dispose()


@pytest.mark.postgres
def test_a_pooled_connection_the_server_dropped_is_replaced_not_used(
    pg_engine, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(engine, "IDLE_PING", 0.1)
    db = Database.from_url(PG_URL)
    try:
        with db.read() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"
        with pg_engine.connect() as admin:  # as a server restart would
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        time.sleep(0.2)  # the pooled connection has been idle: it is checked first
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    finally:
        db.engine.dispose()


def test_purge_keeps_instances_events_and_the_unfolded_but_not_old_raw_data(
    store_services: Services,
) -> None:
    store = store_services.store
    store.append_delivery(delivery("old-1", at=NOW - 100))
    store.append_delivery(delivery("new-1", at=NOW))
    usecases.fold_inbox(store_services)
    store.append_delivery(delivery("old-unfolded", at=NOW - 100))
    state = GbgState(COMPLETED, "Completed", document={"status": "Completed"})
    apply(store, Fetched("old-1", state), NOW - 90)
    apply(store, Fetched("new-1", state), NOW)
    assert store.purge(NOW - 50) == (2, 1)  # old-1's delivery and its fetch; its data
    assert len(store.deliveries_for("old-unfolded")) == 1  # not yet folded: kept
    assert [a["kind"] for a in store.history("new-1")["attempts"]] == ["fetch"]
    assert store.history("old-1")["attempts"] == []
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
    from receiver.store.engine import Database
    from tests.conftest import empty_tables

    empty_tables(pg_engine)
    target = Store(Database(pg_engine))
    source = Store.from_url(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(source.engine)
    for n in range(5):
        source.append_delivery(delivery(f"m-{n}", at=NOW + n))
        apply(source, Registered(f"m-{n}"), NOW + n)
        apply(source, Fetched(f"m-{n}", GbgState(COMPLETED, "Completed")), NOW + 10)
    usecases.fold(source, Policy(), [(Registered("f-1"), NOW)], forward=True)
    usecases.fold(
        source, Policy(), [(Fetched("f-1", GbgState(COMPLETED, "Completed")), NOW)], forward=True
    )
    [message] = source.messages(status=None, limit=9)  # still to be sent: moves along
    source.revoke_session("signed-out", NOW + 3600)
    FetchSlots(source.db, 1.0).take(lambda: NOW)
    copied = copy_from(source.db, target.db, batch=2)
    assert copied == {
        "instances": 6,
        "deliveries": 5,
        "events": 6,
        "outbox": 1,
        "attempts": 6,
        "rate_limits": 1,
        "revoked_sessions": 1,
        "idempotency_keys": 0,
    }
    assert target.messages(status=None, limit=9) == [message]
    assert target.session_revoked("signed-out")
    assert target.events_after(0, 10) == source.events_after(0, 10)
    assert target.get("m-3") == source.get("m-3")
    apply(target, Registered("after-move"), NOW + 20)
    apply(target, Fetched("after-move", GbgState(COMPLETED, "Completed")), NOW + 21)
    assert target.events_after(6, 10)[0]["seq"] == 7  # the sequence continues
    with pytest.raises(ValueError, match="already has instances"):
        copy_from(source.db, target.db)
    source.engine.dispose()


def test_a_batch_folds_duplicates_in_order(store_services: Services) -> None:
    store = store_services.store
    for d in (delivery("b-1", at=NOW), delivery("b-2", at=NOW), delivery("b-1", at=NOW + 1)):
        store.append_delivery(d)
    assert usecases.fold_inbox(store_services) == 3
    folded = store.get("b-1")
    assert folded is not None
    assert folded.webhook_received_at == NOW + 1
    assert len(store.deliveries_for("b-1")) == 2
    assert store.events_after(0, 10) == []  # a webhook never changes a status


def test_an_instance_with_a_delivery_in_the_inbox_is_not_due(store_services: Services) -> None:
    store = store_services.store
    apply(store, Registered("i-1"), NOW)
    due_at = NOW + POLICY.webhook_timeout
    store.append_delivery(delivery("i-1", at=due_at))
    assert store.claim_due("p1", due_at + 0.5, 10, 60) == []  # it would be "no webhook"
    usecases.fold_inbox(store_services)
    claimed = store.claim_due("p1", due_at + POLICY.confirm_delay, 10, 60)
    assert [i.instance_id for i in claimed] == ["i-1"]
    assert claimed[0].webhook_received_at == due_at


def test_migrations_produce_exactly_the_schema(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from receiver.store.schema import metadata

    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def test_a_database_error_never_carries_the_parameters(store: Store) -> None:
    row = {"instance_id": "dup-1", "status": "in_progress", "source": "api"}
    row |= {"registered_at": NOW, "updated_at": NOW, "poll_errors": 0, "polling_gave_up": False}
    secret_state = {"subject": {"identity": {"firstName": "Jane-Personal"}}}
    with store.db.write() as conn:
        conn.execute(schema.instances.insert(), row)
    with pytest.raises(sa.exc.IntegrityError) as caught, store.db.write() as conn:
        conn.execute(schema.instances.insert(), row | {"state": secret_state})
    assert "Jane-Personal" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)
