"""The background worker process: APScheduler jobs over the use cases, never inside gunicorn.

Jobs: fold the inbox (every ``FOLD_TICK``, and again at once while batches come full),
send due outbox messages to the application (when RECEIVER_FORWARD_URL is set), poll due
instances (``Poller.drain`` every tick), renew the leases of the fetches under
way, expire instances past their TTL, purge what is past retention, and write the
heartbeat: to the store, for every host's /readyz, and to the file the container's
health check reads. Any number of workers may run at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from receiver import healthcheck, liveness, usecases
from receiver.errors import StoreUnavailable
from receiver.services import Services
from receiver.stopsignals import StopSignals
from receiver.workers.forwarder import Forwarder
from receiver.workers.poller import TICK, Poller

log = logging.getLogger("receiver.worker")

FOLD_TICK = 0.05  # seconds between looks at the inbox: folding latency stays well under 0.2 s
EXPIRE_EVERY = 5.0
FORWARD_TICK = 0.05  # seconds between looks at the outbox


def run(services: Services, *, tick: float = TICK) -> None:
    """Work until SIGTERM/SIGINT; then finish in-flight fetches and give leases back."""
    with StopSignals() as stops:  # before anything starts: a stop that comes early is kept
        poller = Poller(services, tick=tick)
        forwarder = Forwarder(services, owner=poller.owner) if services.forwarding else None
        stopping = threading.Event()
        scheduler = BackgroundScheduler(timezone=UTC)
        logging.getLogger("apscheduler").setLevel(logging.ERROR)  # one line a tick is noise

        def fold() -> None:
            while not stopping.is_set() and usecases.fold_inbox(services) == usecases.FOLD_BATCH:
                pass  # a full batch: more may be waiting

        now = datetime.now(UTC)
        jobs: list[tuple[Callable[[], object], float]] = [
            (fold, FOLD_TICK),
            (lambda: poller.drain(stopping), tick),
            (lambda: usecases.expire(services, services.clock()), EXPIRE_EVERY),
            (lambda: usecases.purge(services), 3600.0),
            (poller.renew, services.settings.poll_lease / 3),
            (lambda: beat(services, poller.owner), liveness.EVERY),
        ]
        if forwarder is not None:
            jobs.append((forwarder.drain, FORWARD_TICK))
        for job, every in jobs:
            scheduler.add_job(
                _logged(job),
                "interval",
                seconds=every,
                max_instances=1,
                coalesce=True,
                next_run_time=now,
            )
        scrape = services.settings.worker_metrics_bind
        server = services.metrics.serve(services.store, services.clock, scrape) if scrape else None
        log.info(
            "poller.started",
            extra={"owner": poller.owner, "concurrency": services.settings.poll_concurrency},
        )
        scheduler.start()
        log.info("worker.stopping", extra={"signal": stops.wait()})
        stopping.set()
        scheduler.shutdown()  # the jobs under way see ``stopping`` and finish
        if server is not None:
            server.shutdown()
        released = poller.close()  # fetches in flight finish and fold their results in
        if forwarder is not None:
            released += forwarder.close()
        _logged(lambda: liveness.beat(services, poller.owner, stopped=True))()
        log.info("poller.stopped", extra={"owner": poller.owner, "released": released})


def beat(services: Services, owner: str) -> None:
    """The heartbeat: the file first, so the container's check sees the process even
    while the store is down (which every host's /readyz reports by itself)."""
    healthcheck.touch()
    liveness.beat(services, owner)


def _logged(job: Callable[[], object]) -> Callable[[], None]:
    """A job that logs an unavailable store and tries again at its next run."""

    def run_job() -> None:
        try:
            job()
        except StoreUnavailable as exc:
            log.error("worker.store_unavailable", extra={"error": str(exc)})

    return run_job
