"""The service layer: what the web, the CLI and the workers do, each in one place.

Every change of an instance goes through ``observe``/``_fold``: the instance rows are
locked, ``decide()`` takes each observation in turn, and the instances, their events
and (for the inbox) the folded marks are written in the same transaction. So
concurrent webhooks, workers and operators fold one after another, and each status
change writes exactly one event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from receiver.domain import schedule
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
from receiver.errors import GbgError, Throttled
from receiver.services import Services
from receiver.store import Store, events, inbox, instances
from receiver.store.inbox import Delivery

log = logging.getLogger("receiver.usecases")

DAY = 86400.0
FOLD_BATCH = 500
EXPIRE_BATCH = 500
OPERATOR_WAIT = 5.0  # seconds an operator's poll may wait for its fetch slot


def owner_id() -> str:
    """A lease owner name that is unique per process and per start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def record_webhook(services: Services, delivery: Delivery) -> None:
    """Commit a webhook delivery to the inbox; a worker folds it in shortly."""
    services.store.append_delivery(delivery)


def fold_inbox(services: Services, limit: int = FOLD_BATCH) -> int:
    """Fold the oldest unfolded deliveries into their instances; answer how many."""

    def work(conn: Connection) -> int:
        taken = inbox.take(conn, limit)
        if taken:
            observations = [(WebhookReceived(d.instance_id, d.claim), d.received_at) for d in taken]
            _fold(conn, observations, services.policy)
            inbox.mark_folded(conn, [d.id for d in taken], services.clock())
        return len(taken)

    folded = services.store.transaction(work)
    if folded:
        services.metrics.folded.inc(folded)
    return folded


def register(services: Services, instance_id: str, reference: str | None) -> Decision:
    """Register an instance the application started; its webhook timeout starts now."""
    return observe(services, Registered(instance_id, reference), services.clock())


def observe(
    services: Services, observation: Observation, now: float, *, lease_owner: str | None = None
) -> Decision:
    """Fold one observation into its instance; release ``lease_owner``'s lease on it."""
    [decision] = fold(
        services.store, services.policy, [(observation, now)], lease_owner=lease_owner
    )
    return decision


def fold(
    store: Store,
    policy: Policy,
    observations: Sequence[tuple[Observation, float]],
    *,
    lease_owner: str | None = None,
) -> list[Decision]:
    """Fold observations, in order, in one transaction."""
    return store.transaction(lambda conn: _fold(conn, observations, policy, lease_owner))


def _fold(
    conn: Connection,
    observations: Sequence[tuple[Observation, float]],
    policy: Policy,
    lease_owner: str | None = None,
) -> list[Decision]:
    """decide() each observation in turn on the locked rows, then write what changed."""
    ids = sorted({o.instance_id for o, _ in observations})
    locked = instances.lock(conn, ids)
    known = {i: instance for i, (instance, _) in locked.items()}
    current: dict[str, Instance] = dict(known)
    decisions = []
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
    new_events = [d.event for d in decisions if d.event is not None]
    if new_events:
        events.append(conn, new_events)
    return decisions


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
        fetched = fetch(services, instance_id, by="api", max_wait=OPERATOR_WAIT)
        decision = observe(services, fetched.observation, services.clock(), lease_owner=owner)
        fetched.log(decision)
        return decision.instance
    finally:
        services.store.release(owner)


def erase(services: Services, instance_id: str) -> Instance | None:
    """Erase what is kept about the person: the instance's personal fields and every
    delivery. Its status, times and events stay. None if the instance is unknown."""

    def work(conn: Connection) -> Instance | None:
        arrived = inbox.erase(conn, instance_id)
        if arrived:  # acknowledged, not yet folded: folded now, so the 202 still holds
            _fold(conn, [(WebhookReceived(instance_id), at) for at in arrived], services.policy)
        if not instances.erase(conn, instance_id):
            return None
        return instances.get(conn, instance_id)

    erased = services.store.transaction(work)
    services.store.db.compact()
    if erased is not None:
        log.info("instance.erased", extra={"instance_id": instance_id})
    return erased


def resume_given_up(services: Services) -> int:
    """Poll again, from now, every unfinished instance that gave up."""
    resumed = services.store.resume_given_up(services.clock())
    log.info("poll.resumed", extra={"resumed": resumed})
    return resumed


@dataclass(frozen=True)
class FetchResult:
    """A state fetch's observation and how long GBG took to give it."""

    observation: Fetched | FetchFailed
    seconds: float

    @property
    def outcome(self) -> str:
        return getattr(self.observation, "error", "ok")

    def log(self, decision: Decision) -> None:
        log.info(
            "poll.fetched",
            extra={
                "instance_id": decision.instance.instance_id,
                "outcome": self.outcome,
                "status": decision.instance.status,
                "poll_errors": decision.instance.poll_errors,
                "duration_ms": round(self.seconds * 1000, 1),
                "started_at": round(self.observation.started_at or 0.0, 4),
            },
        )


def fetch(
    services: Services,
    instance_id: str,
    *,
    by: str = "poll",
    gate: AbstractContextManager[Any] | None = None,
    max_wait: float | None = None,
) -> FetchResult:
    """Ask GBG for one instance's state when the shared rate limit allows.

    ``gate`` bounds the requests in flight to GBG; it is held from the rate-limit slot
    to GBG's answer only, so writing the result never keeps the next request waiting.
    A slot further off than ``max_wait`` raises Throttled.
    """
    if services.gbg is None:
        raise GbgError("GBG is not configured")
    observation: Fetched | FetchFailed
    with gate or contextlib.nullcontext():
        # The slot is reserved once this request can really go: reserved early and
        # then held up, two requests could start together and break the rate.
        slot = services.slots.take(services.clock)
        wait = slot - services.clock()
        if max_wait is not None and wait > max_wait:
            paused = services.slots.failures_seen >= schedule.WIDE_AFTER
            raise Throttled(wait, gbg_down=paused)
        if wait > 0:
            services.sleep(wait)
        started = time.perf_counter()
        started_at = services.clock()
        try:
            state = services.gbg.fetch_state(instance_id)
        except GbgError as exc:
            retry_after = getattr(exc, "retry_after", None)
            wide = exc.wide and _gbg_failing(services)
            observation = FetchFailed(instance_id, exc.kind, retry_after, started_at, wide)
            if retry_after:
                services.store.pause_fetches(services.clock() + retry_after)  # all of us
        else:
            observation = Fetched(instance_id, state, by, started_at)
            if services.slots.failures_seen:
                _gbg_recovered(services)
    result = FetchResult(observation, time.perf_counter() - started)
    services.metrics.fetches.labels(result.outcome).inc()
    services.metrics.fetch_seconds.observe(result.seconds)
    return result


def _gbg_failing(services: Services) -> bool:
    """Count a GBG-wide failure; True once they are GBG's outage and every fetch waits."""
    streak, paused = services.store.gbg_failed(
        services.clock(), lambda n: schedule.gbg_pause(services.policy, n)
    )
    services.slots.failures_seen = streak
    if paused:
        log.warning("gbg.paused", extra={"failures": streak})
    return paused


def _gbg_recovered(services: Services) -> None:
    """A fetch succeeded after GBG-wide failures: end the pause; after an outage, poll
    again the instances that gave up meanwhile."""
    streak = services.store.gbg_recovered()
    services.slots.failures_seen = 0
    if streak >= schedule.WIDE_AFTER:
        resumed = services.store.resume_given_up(services.clock())
        log.warning("gbg.recovered", extra={"failures": streak, "resumed": resumed})


def purge(services: Services, days: float | None = None) -> tuple[int, int]:
    """Delete folded deliveries older than the retention period, and forget the personal
    data of instances that finished before it."""
    days = services.settings.retention_days if days is None else days
    deleted, forgotten = services.store.purge(services.clock() - days * DAY)
    log.info(
        "retention.purged",
        extra={"deliveries_deleted": deleted, "instances_forgotten": forgotten, "days": days},
    )
    return deleted, forgotten
