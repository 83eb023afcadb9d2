"""The store's instance rules at their edges: pages and cursors with equal times,
leases that run out exactly now, retention, expiry and resuming."""

from __future__ import annotations

from dataclasses import replace

import pytest

from receiver.domain.model import COMPLETED, IN_PROGRESS, Instance
from receiver.store import Store, instances

T = 1_000_000.0


def put(store: Store, *rows: Instance) -> None:
    store.transaction(lambda conn: instances.insert(conn, list(rows)))


def row(instance_id: str, at: float = T, **fields: object) -> Instance:
    return replace(Instance(instance_id, registered_at=at, updated_at=at), **fields)  # type: ignore[arg-type]


def ids(found: list[Instance]) -> list[str]:
    return [i.instance_id for i in found]


def test_pages_order_equal_times_by_id_and_the_cursor_splits_them(store: Store) -> None:
    put(store, row("a"), row("c"), row("b"), row("d", T - 1), row("e", T + 1), row("0", T + 1))
    assert ids(store.page(status=None, limit=10, after=None)) == ["e", "0", "c", "b", "a", "d"]
    assert ids(store.page(status=None, limit=2, after=None)) == ["e", "0"]
    assert ids(store.page(status=None, limit=10, after=(T, "c"))) == ["b", "a", "d"]
    assert ids(store.page(status=None, limit=10, after=(T, "a"))) == ["d"]


def test_pages_filter_by_given_up_either_way(store: Store) -> None:
    put(store, row("up", polling_gave_up=True), row("on", polling_gave_up=False))
    assert ids(store.page(status=None, limit=10, after=None, given_up=True)) == ["up"]
    assert ids(store.page(status=None, limit=10, after=None, given_up=False)) == ["on"]


def test_a_lease_that_ends_exactly_now_is_free(store: Store) -> None:
    put(store, row("l-1", next_poll_at=T))
    assert store.claim("l-1", "first", T, 30.0)
    assert not store.claim("l-1", "second", T + 29.999, 30.0)
    assert store.claim("l-1", "second", T + 30.0, 30.0)
    assert store.claim_due("third", T + 60.0, 10, 30.0)[0].instance_id == "l-1"


def test_expiry_takes_what_was_registered_up_to_the_limit_and_at_most_a_batch(
    store: Store,
) -> None:
    put(store, row("old-1", T - 10), row("old-2", T - 5), row("edge", T), row("new", T + 1))
    put(store, row("done", T - 10, status=COMPLETED))
    assert sorted(store.past_ttl(T, 10)) == ["edge", "old-1", "old-2"]
    assert len(store.past_ttl(T, 2)) == 2


def test_retention_forgets_finished_personal_data_and_stale_unfinished_states(
    store: Store,
) -> None:
    personal = {"reference": "order-1", "outcome": "Of Age", "state": {"status": "x"}}
    put(
        store,
        row("done-old", T - 10, status=COMPLETED, **personal),
        row("done-edge", T, status=COMPLETED, **personal),
        row("open-old", T - 10, status=IN_PROGRESS, **personal),
        row("open-new", T + 10, status=IN_PROGRESS, **personal),
        row("open-old-bare", T - 10, status=IN_PROGRESS),
    )
    assert store.transaction(lambda conn: instances.forget(conn, T)) == 2
    forgotten = store.get("done-old")
    assert forgotten is not None
    assert (forgotten.reference, forgotten.outcome, forgotten.state) == (None, None, None)
    assert store.get("done-edge").state == personal["state"]  # type: ignore[union-attr]
    stale = store.get("open-old")
    assert stale is not None
    assert (stale.reference, stale.state) == ("order-1", None)  # the application's own stays
    assert store.get("open-new").state == personal["state"]  # type: ignore[union-attr]
    assert store.transaction(lambda conn: instances.forget(conn, T)) == 0  # nothing left


def test_resuming_wakes_only_unfinished_instances_that_gave_up(store: Store) -> None:
    gave_up = {"polling_gave_up": True, "poll_errors": 30, "next_poll_at": None}
    put(store, row("stuck", **gave_up), row("ended", status=COMPLETED, **gave_up), row("fine"))
    assert store.resume_given_up(T + 5) == 1
    resumed = store.get("stuck")
    assert resumed is not None
    assert (resumed.polling_gave_up, resumed.poll_errors, resumed.next_poll_at) == (False, 0, T + 5)
    assert resumed.updated_at == T + 5
    assert store.get("ended").polling_gave_up  # type: ignore[union-attr]
    assert store.resume_given_up(T + 6, "fine") == 0


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_due_instances_come_soonest_first_up_to_the_limit(store: Store, limit: int) -> None:
    put(
        store,
        row("late", next_poll_at=T + 3),
        row("soon", next_poll_at=T + 1),
        row("mid", next_poll_at=T + 2),
    )
    put(store, row("later", next_poll_at=T + 50))
    claimed = store.claim_due("w", T + 10, limit, 30.0)
    assert set(ids(claimed)) == set(["soon", "mid", "late"][:limit])


def test_releasing_one_lease_leaves_the_owners_others(store: Store) -> None:
    put(store, row("r-a", next_poll_at=T), row("r-b", next_poll_at=T), row("r-c", next_poll_at=T))
    assert len(store.claim_due("w", T, 10, 30.0)) == 3
    assert store.release("w", "r-b") == 1
    assert sorted(i for i, _, _ in store.leases()) == ["r-a", "r-c"]
    assert store.claim("r-b", "other", T, 30.0)
    assert store.release("w", "r-b") == 0  # another owner's lease is not ours to give back
    assert store.release("w") == 2
    assert [i for i, _, _ in store.leases()] == ["r-b"]
