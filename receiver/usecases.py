"""The service layer: what the web, the CLI and the workers do, each in one place.

Every change of an instance goes through ``observe``/``_fold``: the instance rows are
locked, ``decide()`` takes each observation in turn, and the instances, their events
and (for the inbox) the folded marks are written in the same transaction. So
concurrent webhooks, workers and operators fold one after another, and each status
change writes exactly one event.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from receiver import fetching
from receiver.domain.model import (
    Decision,
    Fetched,
    FetchFailed,
    Instance,
    Observation,
    Registered,
    TtlPassed,
    WebhookReceived,
)
from receiver.domain.reconcile import decide
from receiver.domain.schedule import Policy
from receiver.errors import GbgError, StoreUnavailable
from receiver.services import Services
from receiver.shapes import message_json
from receiver.store import Store, attempts, events, inbox, instances, outbox
from receiver.store.engine import cause
from receiver.store.inbox import Delivery

log = logging.getLogger("receiver.usecases")

DAY = 86400.0
FOLD_BATCH = 500
FOLD_TRIES = 3  # tries at folding one delivery alone before it is set aside
EXPIRE_BATCH = 500
OPERATOR_WAIT = 5.0  # seconds an operator's poll may wait for its fetch slot


def owner_id() -> str:
    """A lease owner name that is unique per process and per start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def record_webhook(services: Services, delivery: Delivery) -> None:
    """Commit a webhook delivery to the inbox; a worker folds it in shortly."""
    services.store.append_delivery(delivery)


def fold_inbox(services: Services, limit: int = FOLD_BATCH) -> int:
    """Fold the oldest deliveries in the inbox into their instances; answer how many.

    They go in one transaction; if that fails for any reason but the store's, each is
    folded alone, and one that keeps failing is set aside (quarantined) after FOLD_TRIES
    tries, so it never holds up the rest.
    """
    try:
        folded = services.store.transaction(
            lambda conn: _fold_deliveries(conn, services, inbox.take(conn, limit))
        )
    except StoreUnavailable:
        raise
    except Exception:  # a delivery that cannot be folded: find it, fold the others
        folded = sum(_fold_alone(services, d) for d in services.store.waiting_deliveries(limit))
    if folded:
        services.metrics.folded.inc(folded)
    return folded


def _fold_deliveries(conn: Connection, services: Services, taken: list[inbox.Unfolded]) -> int:
    if taken:
        observations = [(WebhookReceived(d.instance_id, d.claim), d.received_at) for d in taken]
        # A webhook never changes a status (only GBG's state does): nothing to forward.
        _fold(conn, observations, services.policy)
        inbox.mark_folded(conn, [d.id for d in taken], services.clock())
    return len(taken)


def _fold_alone(services: Services, delivery_id: int) -> int:
    try:
        return services.store.transaction(
            lambda conn: _fold_deliveries(conn, services, inbox.take_one(conn, delivery_id))
        )
    except StoreUnavailable:
        raise
    except Exception as exc:  # this delivery's own fault: counted, in time set aside
        aside = services.store.fold_failed(delivery_id, cause(exc), services.clock(), FOLD_TRIES)
        log.error(
            "inbox.fold_failed",
            extra={"delivery_id": delivery_id, "error": type(exc).__name__, "quarantined": aside},
        )
        return 0


def refold(services: Services, delivery_id: int | None = None) -> int:
    """Put deliveries set aside (one, or all) back in the inbox; answer how many."""
    back = services.store.refold(delivery_id)
    log.info("inbox.refolded", extra={"delivery_id": delivery_id, "deliveries": back})
    return back


def register(services: Services, instance_id: str, reference: str | None) -> Decision:
    """Register an instance the application started; its webhook timeout starts now."""
    return observe(services, Registered(instance_id, reference), services.clock())


def start_journey(
    services: Services, resource_id: str, context: dict[str, Any], reference: str | None
) -> Decision:
    """Start a journey at GBG with the server's token and register its instance at once
    (its webhook timeout runs from now), with the URL the person opens (v2)."""
    if services.gbg is None:
        raise GbgError("GBG is not configured")
    instance_id, url = services.gbg.start_journey(resource_id, context)
    decision = observe(services, Registered(instance_id, reference, url), services.clock())
    log.info("journey.started", extra={"instance_id": instance_id, "resource_id": resource_id})
    return decision


def observe(
    services: Services, observation: Observation, now: float, *, lease_owner: str | None = None
) -> Decision:
    """Fold one observation into its instance; release ``lease_owner``'s lease on it."""
    [decision] = fold(
        services.store,
        services.policy,
        [(observation, now)],
        lease_owner=lease_owner,
        forward=services.forwarding,
    )
    return decision


def fold(
    store: Store,
    policy: Policy,
    observations: Sequence[tuple[Observation, float]],
    *,
    lease_owner: str | None = None,
    forward: bool,
) -> list[Decision]:
    """Fold observations, in order, in one transaction; with ``forward``, each status
    change's message to the application goes into the outbox in that transaction too."""
    return store.transaction(
        lambda conn: _fold(conn, observations, policy, lease_owner, forward=forward)
    )


def _fold(
    conn: Connection,
    observations: Sequence[tuple[Observation, float]],
    policy: Policy,
    lease_owner: str | None = None,
    *,
    forward: bool = False,
) -> list[Decision]:
    """decide() each observation in turn on the locked rows, then write what changed."""
    ids = sorted({o.instance_id for o, _ in observations})
    locked = instances.lock(conn, ids)
    known = {i: instance for i, (instance, _) in locked.items()}
    current: dict[str, Instance] = dict(known)
    decisions, tried = [], []
    for observation, now in observations:
        instance = current.get(observation.instance_id)
        held = locked.get(observation.instance_id)
        if lease_owner is not None and held is not None and held[1] != lease_owner:
            # The lease ran out during the fetch and another worker holds it now: its
            # answer, not this older one, is the one to keep.
            log.warning("poll.lease_lost", extra={"instance_id": observation.instance_id})
            decisions.append(Decision(known[observation.instance_id], None, False))
            continue
        decision = decide(instance, observation, now, policy)
        current[observation.instance_id] = decision.instance
        decisions.append(decision)
        if isinstance(observation, Fetched | FetchFailed):  # the instance's timeline
            tried.append(_fetch_attempt(observation, now))
    created = [current[i] for i in ids if i not in known]
    if created:
        instances.insert(conn, created)
    changed = [
        current[i]
        for i in ids
        if i in known
        and (current[i] != known[i] or (lease_owner is not None and locked[i][1] == lease_owner))
    ]
    if changed:
        instances.save(conn, changed, release=lease_owner)
    attempts.record(conn, tried)
    changes = [(d.event, d.instance) for d in decisions if d.event is not None]
    if changes:
        seqs = events.append(conn, [event for event, _ in changes])
        if forward:
            messages = [
                (seq, event.instance_id, json.dumps(message_json(seq, event, instance)))
                for seq, (event, instance) in zip(seqs, changes, strict=True)
            ]
            outbox.enqueue(conn, messages, changes[0][0].at)
    return decisions


def _fetch_attempt(observation: Fetched | FetchFailed, now: float) -> dict[str, Any]:
    if isinstance(observation, Fetched):
        outcome, gbg_status = "ok", observation.state.gbg_status
    else:
        outcome, gbg_status = observation.error[:32], None
    return {
        "instance_id": observation.instance_id,
        "at": now,
        "kind": "fetch",
        "outcome": outcome,
        "gbg_status": gbg_status,
        "seconds": observation.seconds,
    }


def expire(services: Services, now: float) -> int:
    """Mark instances past RECEIVER_INSTANCE_TTL expired; answer how many changed."""
    changed = 0
    for instance_id in services.store.past_ttl(now - services.policy.ttl, EXPIRE_BATCH):
        if observe(services, TtlPassed(instance_id), now).event is not None:
            changed += 1
    return changed


def poll_now(services: Services, instance_id: str) -> Instance | None:
    """An operator's fetch of one instance now; None while a worker holds its lease.

    The wait for a fetch slot is bounded: past OPERATOR_WAIT it raises Throttled (the
    API answers 429/503 with Retry-After) instead of holding a web thread.
    """
    owner = owner_id()
    lease = services.settings.poll_lease
    if not services.store.claim(instance_id, owner, services.clock(), lease):
        return None
    try:
        fetched = fetching.fetch(services, instance_id, by="api", max_wait=OPERATOR_WAIT)
        decision = observe(services, fetched.observation, services.clock(), lease_owner=owner)
        fetched.log(decision)
        return decision.instance
    finally:
        services.store.release(owner)


def erase(services: Services, instance_id: str) -> Instance | None:
    """Erase what is kept about the person: the instance's personal fields, every
    delivery and every message to the application (one not yet delivered is not sent).
    Its status, times and events stay. None if the instance is unknown."""

    def work(conn: Connection) -> Instance | None:
        arrived = inbox.erase(conn, instance_id)
        if arrived:  # acknowledged, not yet folded: folded now, so the 202 still holds
            webhooks = [(WebhookReceived(instance_id), at) for at in arrived]
            _fold(conn, webhooks, services.policy)
        if not instances.erase(conn, instance_id):
            return None
        outbox.erase(conn, instance_id)
        return instances.get(conn, instance_id)

    erased = services.store.transaction(work)
    services.store.db.compact()
    if erased is not None:
        log.info("instance.erased", extra={"instance_id": instance_id})
    return erased


def resume_given_up(services: Services, instance_id: str | None = None) -> int:
    """Poll again, from now, every unfinished instance that gave up (or only
    ``instance_id``, if it did); answer how many."""
    resumed = services.store.resume_given_up(services.clock(), instance_id)
    log.info("poll.resumed", extra={"resumed": resumed, "instance_id": instance_id})
    return resumed


def purge(services: Services, days: float | None = None) -> tuple[int, int]:
    """Delete folded deliveries and finished messages older than the retention period,
    and forget the personal data of instances that finished before it."""
    days = services.settings.retention_days if days is None else days
    deleted, forgotten = services.store.purge(services.clock() - days * DAY)
    log.info(
        "retention.purged",
        extra={"rows_deleted": deleted, "instances_forgotten": forgotten, "days": days},
    )
    return deleted, forgotten
