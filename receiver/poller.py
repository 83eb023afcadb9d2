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
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

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
        futures = [pool.submit(_poll_claimed, services, i, owner) for i in claimed]
        for future in futures:
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
    gate: AbstractContextManager[Any] | None = None,
) -> Decision:
    """One state fetch under the shared rate limit, folded into the store.

    ``gate`` bounds the requests in flight to GBG; it is held from the rate-limit slot
    to GBG's answer only, so writing the result never keeps the next request waiting.
    """
    if services.gbg is None:
        raise GbgError("GBG is not configured")
    store = services.store
    observation: Observation
    with gate or contextlib.nullcontext():
        # The slot is reserved once this request can really go: reserved early and
        # then held up, two requests could start together and break the rate.
        slot = store.reserve_fetch(services.clock(), services.settings.gbg_rate_limit)
        wait = slot - services.clock()
        if wait > 0:
            services.sleep(wait)
        started = time.perf_counter()
        started_at = services.clock()
        try:
            state = services.gbg.fetch_state(instance_id)
            observation = Fetched(instance_id, state, by, started_at)
        except GbgUnavailable as exc:
            observation = FetchFailed(instance_id, exc.kind, exc.retry_after, started_at)
            if exc.retry_after:
                store.pause_fetches(services.clock() + exc.retry_after)  # GBG said: all of us
        except GbgError as exc:
            observation = FetchFailed(instance_id, exc.kind, started_at=started_at)
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
            "started_at": round(started_at, 4),
        },
    )
    return decision


def _poll_claimed(
    services: Services,
    instance: Instance,
    owner: str,
    gate: AbstractContextManager[Any] | None = None,
) -> Decision | None:
    try:
        return fetch(services, instance.instance_id, owner, gate=gate)
    except Exception:  # one instance's surprise must not stop the batch; its lease goes back
        log.exception("poll.failed", extra={"instance_id": instance.instance_id})
        with contextlib.suppress(StoreUnavailable):  # else the lease expires by itself
            services.store.release(owner, instance.instance_id)
        return None


def run(services: Services, *, tick: float = TICK) -> None:
    """Poll until SIGTERM/SIGINT; then finish in-flight fetches and give leases back.

    One APScheduler job looks for due work every ``tick``. While there is work it keeps
    RECEIVER_POLL_CONCURRENCY requests out to GBG and as many claimed instances queued
    behind them, so the next request leaves the moment one comes back.
    """
    owner = owner_id()
    settings = services.settings
    concurrency = settings.poll_concurrency
    pool = ThreadPoolExecutor(2 * concurrency, thread_name_prefix="fetch")
    in_flight = threading.BoundedSemaphore(concurrency)  # requests out to GBG
    claimed_room = threading.BoundedSemaphore(2 * concurrency)  # claimed, not yet written
    stopping = threading.Event()
    scheduler = BlockingScheduler(timezone=UTC)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # one line a tick is noise

    def work(instance: Instance) -> None:
        try:
            _poll_claimed(services, instance, owner, in_flight)
        finally:
            claimed_room.release()

    def drain() -> None:
        try:
            expire_overdue(services, services.clock())
            while not stopping.is_set():
                if not claimed_room.acquire(timeout=tick):
                    continue
                room = 1
                while room < 2 * concurrency and claimed_room.acquire(blocking=False):
                    room += 1
                claimed: list[Instance] = []
                try:
                    claimed = services.store.claim_due(
                        owner, services.clock(), room, settings.poll_lease
                    )
                finally:
                    for _ in range(room - len(claimed)):
                        claimed_room.release()
                if not claimed:
                    return  # nothing due now; the next tick looks again
                for instance in claimed:
                    pool.submit(work, instance)
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
