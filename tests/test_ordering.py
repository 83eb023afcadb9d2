"""Webhooks and polls for one instance in every order converge to one row and one event."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from receiver.domain.model import (
    COMPLETED,
    Fetched,
    FetchFailed,
    GbgState,
    Observation,
    Registered,
    WebhookReceived,
)
from receiver.domain.reconcile import decide
from receiver.domain.schedule import Policy
from receiver.migrations import upgrade
from receiver.store import Store
from tests.conftest import apply

POLICY = Policy(jitter=0.0)

pytestmark = pytest.mark.reliability

ID = "order-1"
DONE = GbgState(COMPLETED, "Completed", outcome="Of Age", completed_at=500.0)
STEPS: dict[str, Observation] = {
    "webhook": WebhookReceived(ID, "Completed"),
    "duplicate webhook": WebhookReceived(ID, "Completed"),
    "fetch in progress": Fetched(ID, GbgState("in_progress", "InProgress")),
    "fetch completed": Fetched(ID, DONE),
    "late in progress": Fetched(ID, GbgState("in_progress", "InProgress")),
    "fetch error": FetchFailed(ID, "http_503"),
}
ORDERS = list(itertools.permutations(STEPS))


def outcome(row: object) -> tuple[object, ...]:
    """What must not depend on the order: the status, GBG's answer and the schedule."""
    return (row.status, row.gbg_status, row.outcome, row.completed_at, row.next_poll_at)  # type: ignore[attr-defined]


def test_every_interleaving_converges_with_one_status_change(figure) -> None:  # type: ignore[no-untyped-def]
    policy = Policy(jitter=0.0)
    finals, changes = set(), []
    for order in ORDERS:
        current = decide(None, Registered(ID), 0.0, policy).instance
        events = []
        for t, name in enumerate(order, start=1):
            decision = decide(current, STEPS[name], float(t), policy)
            current = decision.instance
            events += [decision.event] if decision.event else []
        finals.add(outcome(current))
        changes.append(len(events))
        assert [(e.previous_status, e.status) for e in events] == [("in_progress", "completed")]
    assert finals == {("completed", "Completed", "Of Age", 500.0, None)}
    figure(
        f"ordering: {len(ORDERS)} interleavings of {len(STEPS)} observations -> "
        f"{len(finals)} final row, status-change events per run {set(changes)}"
    )


@pytest.mark.parametrize("order", ORDERS[:: len(ORDERS) // 24], ids=lambda o: "|".join(o))
def test_interleavings_through_the_store(tmp_path: Path, order: tuple[str, ...]) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'o.db'}")
    upgrade(store.engine)
    apply(store, Registered(ID), 0.0, POLICY)
    for t, name in enumerate(order, start=1):
        apply(store, replace(STEPS[name]), float(t), POLICY)
    final = store.get(ID)
    assert final is not None
    assert outcome(final) == ("completed", "Completed", "Of Age", 500.0, None)
    events = store.events_after(0, 10)
    assert [(e["previous_status"], e["status"]) for e in events] == [("in_progress", "completed")]
    store.engine.dispose()
