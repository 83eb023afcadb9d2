"""The inbox's store queries at their edges: a batch appended in one statement, failed
folds counted on waiting deliveries only, the oldest waiting ids a page at a time."""

from __future__ import annotations

from receiver.store import Store, inbox
from tests.test_store import NOW, delivery
from tests.test_store_queries import folded


def test_deliveries_appended_in_one_statement_are_each_kept(store: Store) -> None:
    with store.db.cursor() as cursor:
        inbox.append(cursor, store.engine.dialect.paramstyle, [delivery("a-1"), delivery("a-2")])
    assert len(store.deliveries_for("a-1")) == len(store.deliveries_for("a-2")) == 1


def test_the_oldest_waiting_deliveries_come_a_page_at_a_time(store: Store) -> None:
    for n in range(3):
        store.append_delivery(delivery(f"w-{n}"))
    first, second, third = store.waiting_deliveries(10)
    assert store.waiting_deliveries(2) == [first, second]
    folded(store, first)
    assert store.waiting_deliveries(2) == [second, third]


def test_a_failed_fold_counts_on_that_waiting_delivery_alone(store: Store) -> None:
    for n in range(3):
        store.append_delivery(delivery(f"t-{n}"))
    failing, other, done = store.waiting_deliveries(10)
    folded(store, done)
    assert not store.fold_failed(other, "ValueError: once", NOW, tries=2)  # one try of two
    assert store.fold_failed(failing, "E" * 300, NOW, tries=1)  # set aside now
    assert not store.fold_failed(failing, "again", NOW, tries=1)  # aside already: not again
    assert not store.fold_failed(done, "late", NOW, tries=1)  # folded: nothing to count
    [t0], [t1], [t2] = (store.deliveries_for(f"t-{n}") for n in range(3))
    assert (t0["fold_tries"], t0["fold_error"]) == (1, "E" * 256)
    assert (t1["fold_tries"], t1["quarantined_at"]) == (1, None)  # another's tries: untouched
    assert (t2["fold_tries"], t2["fold_error"], t2["quarantined_at"]) == (0, None, None)
