"""The polling fallback: fetch the state of every due instance, under GBG's policy.

``poll_once`` is a plain function (tests call it with a clock they control); ``run``
drives it with APScheduler's BlockingScheduler in its own process, never inside
gunicorn. Rows are claimed with leases, so any number of pollers can run at once and
none fetches an instance another is fetching; the rate limit lives in the store and
holds across all of them. Results go through the same decide() as webhooks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler

from receiver import retention
from receiver.errors import GbgError, GbgUnavailable, StoreUnavailable
from receiver.reconcile import (
    FINAL,
    Decision,
    Fetched,
    FetchFailed,
    Instance,
    Observation,
    TtlPassed,
)
from receiver.services import Services

log = logging.getLogger("receiver.poller")

TICK = 0.1  # seconds between looks for due work; a due instance waits at most this long
EXPIRE_BATCH = 500


@dataclass
class PollReport:
    claimed: int = 0
    final: int = 0
    errors: int = 0
    expired: int = 0


def owner_id() -> str:
    """A lease owner name that is unique per process and per start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def poll_once(
    services: Services,
    now: float | None = None,
    *,
    owner: str | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> PollReport:
    """Expire what outlived its TTL, then claim and fetch one batch of due instances."""
    now = services.clock() if now is None else now
    owner = owner or owner_id()
    settings = services.settings
    report = PollReport(expired=expire_overdue(services, now))
    claimed = services.store.claim_due(owner, now, settings.poll_concurrency, settings.poll_lease)
    report.claimed = len(claimed)
    if not claimed:
        return report
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(settings.poll_concurrency)
    try:
        for future in _submit(services, claimed, owner, pool):
            decision = future.result()
            if decision is None or decision.instance.poll_errors:
                report.errors += 1
            elif decision.instance.status in FINAL:
                report.final += 1
    finally:
        if own_pool:
            pool.shutdown(wait=True)
    return report


def expire_overdue(services: Services, now: float) -> int:
    """Mark instances past RECEIVER_INSTANCE_TTL expired; answer how many changed."""
    changed = 0
    for instance_id in services.store.past_ttl(now, EXPIRE_BATCH):
        if services.store.apply(TtlPassed(instance_id), now).event is not None:
            changed += 1
    return changed


def _submit(
    services: Services,
    claimed: list[Instance],
    owner: str,
    pool: ThreadPoolExecutor,
    answered: Callable[[], None] = lambda: None,
) -> list[Future[Decision | None]]:
    """Start one fetch per claimed instance, each at its own slot of the shared rate.

    ``answered`` is called once per instance as soon as GBG has answered (or failed to),
    before the result is written: the GBG request slot is free again from then on.
    """
    slots = services.store.reserve_fetches(
        services.clock(), services.settings.gbg_rate_limit, len(claimed)
    )
    return [
        pool.submit(_poll_claimed, services, instance, owner, slot, answered)
        for instance, slot in zip(claimed, slots, strict=True)
    ]


def poll_now(services: Services, instance_id: str) -> Instance | None:
    """An operator's fetch of one instance now; None while a poller holds its lease."""
    owner = owner_id()
    claimed = services.store.claim(
        instance_id, owner, services.clock(), services.settings.poll_lease
    )
    if claimed is None:
        return None
    try:
        return fetch(services, instance_id, owner, by="api").instance
    finally:
        services.store.release(owner)


def fetch(
    services: Services,
    instance_id: str,
    owner: str,
    *,
    by: str = "poll",
    slot: float | None = None,
    answered: Callable[[], None] = lambda: None,
) -> Decision:
    """One state fetch under the shared rate limit, folded into the store.

    ``slot`` is the start time reserved for it; without one, a slot is reserved now.
    """
    if services.gbg is None:
        raise GbgError("GBG is not configured")
    store = services.store
    if slot is None:
        [slot] = store.reserve_fetches(services.clock(), services.settings.gbg_rate_limit, 1)
    wait = slot - services.clock()
    if wait > 0:
        services.sleep(wait)
    started = time.perf_counter()
    started_at = services.clock()
    observation: Observation
    try:
        state = services.gbg.fetch_state(instance_id)
        observation = Fetched(instance_id, state, by, started_at)
    except GbgUnavailable as exc:
        observation = FetchFailed(instance_id, exc.kind, exc.retry_after, started_at)
        if exc.retry_after:
            store.pause_fetches(services.clock() + exc.retry_after)  # GBG said: all of us
    except GbgError as exc:
        observation = FetchFailed(instance_id, exc.kind, started_at=started_at)
    finally:
        answered()
    seconds = time.perf_counter() - started
    services.metrics.fetches.labels(getattr(observation, "error", "ok")).inc()
    services.metrics.fetch_seconds.observe(seconds)
    decision = store.apply(observation, services.clock(), lease_owner=owner)
    log.info(
        "poll.fetched",
        extra={
            "instance_id": instance_id,
            "outcome": getattr(observation, "error", "ok"),
            "status": decision.instance.status,
            "poll_errors": decision.instance.poll_errors,
            "duration_ms": round(seconds * 1000, 1),
        },
    )
    return decision


def _poll_claimed(
    services: Services,
    instance: Instance,
    owner: str,
    slot: float,
    answered: Callable[[], None],
) -> Decision | None:
    once = threading.Lock()

    def answered_once() -> None:
        if once.acquire(blocking=False):
            answered()

    try:
        return fetch(services, instance.instance_id, owner, slot=slot, answered=answered_once)
    except Exception:  # one instance's surprise must not stop the batch; its lease goes back
        log.exception("poll.failed", extra={"instance_id": instance.instance_id})
        with contextlib.suppress(StoreUnavailable):  # else the lease expires by itself
            services.store.release(owner, instance.instance_id)
        return None
    finally:
        answered_once()


def run(services: Services, *, tick: float = TICK) -> None:
    """Poll until SIGTERM/SIGINT; then finish in-flight fetches and give leases back.

    One APScheduler job looks for due work every ``tick``; while there is work it keeps
    every fetch slot busy, claiming only as many instances as there are free slots, so
    no lease is held by an instance still waiting for a thread.
    """
    owner = owner_id()
    settings = services.settings
    concurrency = settings.poll_concurrency
    # GBG requests in flight are bounded by free_slots; twice the threads let results be
    # written while the next requests are already out.
    pool = ThreadPoolExecutor(2 * concurrency, thread_name_prefix="fetch")
    free_slots = threading.BoundedSemaphore(concurrency)
    stopping = threading.Event()
    scheduler = BlockingScheduler(timezone=UTC)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # one line a tick is noise

    def drain() -> None:
        try:
            expire_overdue(services, services.clock())
            while not stopping.is_set():
                if not free_slots.acquire(timeout=tick):
                    continue
                free = 1
                while free < concurrency and free_slots.acquire(blocking=False):
                    free += 1
                claimed = []
                try:
                    claimed = services.store.claim_due(
                        owner, services.clock(), free, settings.poll_lease
                    )
                finally:
                    for _ in range(free - len(claimed)):
                        free_slots.release()
                if not claimed:
                    return  # nothing due now; the next tick looks again
                try:
                    _submit(services, claimed, owner, pool, free_slots.release)
                except BaseException:
                    for _ in claimed:  # their leases lapse by themselves
                        free_slots.release()
                    raise
        except StoreUnavailable as exc:
            log.error("poller.store_unavailable", extra={"error": str(exc)})

    def purge() -> None:
        try:
            retention.purge(services)
        except StoreUnavailable as exc:
            log.error("purge.store_unavailable", extra={"error": str(exc)})

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("poller.stopping", extra={"signal": signal.Signals(signum).name})
        stopping.set()
        if scheduler.running:
            scheduler.shutdown(wait=True)

    scheduler.add_job(purge, "interval", hours=1, max_instances=1, coalesce=True)
    scheduler.add_job(
        drain,
        "interval",
        seconds=tick,
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
    )
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("poller.started", extra={"owner": owner, "concurrency": concurrency})
    scheduler.start()
    pool.shutdown(wait=True)  # fetches in flight finish and fold their results in
    released = services.store.release(owner)
    log.info("poller.stopped", extra={"owner": owner, "released": released})
