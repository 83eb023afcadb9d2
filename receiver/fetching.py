"""Asking GBG for an instance's state: under the shared rate limit, within bounds, and
telling GBG's own failures (which pause everyone) from an instance's (which count).

Used by the poller's fetch threads and by an operator's poll (``usecases.poll_now``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

from receiver.domain import schedule
from receiver.domain.model import Decision, Fetched, FetchFailed
from receiver.errors import GbgError, Throttled
from receiver.services import Services

log = logging.getLogger("receiver.fetching")


@dataclass(frozen=True)
class FetchResult:
    """A state fetch's observation and how long GBG took to give it."""

    observation: Fetched | FetchFailed
    seconds: float

    @property
    def outcome(self) -> str:
        return getattr(self.observation, "error", "ok")

    def log(self, decision: Decision) -> None:
        """The fetch's line; and a warning with the last error if polling gives up now
        (a given-up instance is fetched again only when asked)."""
        instance = decision.instance
        failed = isinstance(self.observation, FetchFailed)
        if failed and instance.polling_gave_up and instance.last_error:
            error = instance.last_error
            log.warning(
                "poll.gave_up",
                extra={
                    "instance_id": instance.instance_id,
                    "poll_errors": instance.poll_errors,
                    "last_error": error["kind"],
                    "http_status": error["httpStatus"],
                    "error_message": error["message"],
                },
            )
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
            observation = FetchFailed(
                instance_id, exc.kind, retry_after, started_at, wide, str(exc)
            )
            if retry_after:
                services.store.pause_fetches(services.clock() + retry_after)  # all of us
        else:
            observation = Fetched(instance_id, state, by, started_at)
            if services.slots.failures_seen:
                _gbg_recovered(services)
    seconds = time.perf_counter() - started
    result = FetchResult(replace(observation, seconds=round(seconds, 4)), seconds)
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
