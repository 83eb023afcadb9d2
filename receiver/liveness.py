"""Which workers run, seen from any host: every worker writes a heartbeat to the store,
and /readyz, /metrics and the dashboard read them from there."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.services import Services

EVERY = 5.0  # seconds between a worker's heartbeats
SILENT = 3 * EVERY  # a running worker not seen for longer is reported silent


def beat(services: Services, owner: str, *, stopped: bool = False) -> None:
    """Record that the worker ``owner`` runs (or, with ``stopped``, has just stopped)."""
    now = services.clock()
    services.store.heartbeat(owner, now, skew_of(services), stopped=stopped)


def skew_of(services: Services) -> float:
    """How far this host's clock is off the shared one (0 where the clock is local)."""
    return float(getattr(services.clock, "skew", 0.0))


@dataclass(frozen=True)
class Liveness:
    """The workers most recently seen, and whether that is recent enough."""

    workers: list[dict[str, Any]]  # newest first: owner, started_at, seen_at, stopped_at
    now: float
    stale_after: float  # 0: the workers never make the service unready

    @property
    def age(self) -> float | None:
        """Seconds since the newest heartbeat; None when no worker has ever run here."""
        return max(0.0, self.now - self.workers[0]["seen_at"]) if self.workers else None

    @property
    def problem(self) -> str | None:
        """Why the service is not ready for want of workers, or None."""
        age = self.age
        if not self.stale_after or age is None or age <= self.stale_after:
            return None
        return f"no worker seen for {age:.0f} s (RECEIVER_WORKER_STALE_AFTER={self.stale_after:g})"

    def report(self) -> list[dict[str, Any]]:
        """Each worker as /readyz lists it."""
        return [
            {
                "worker": w["owner"],
                "state": _state(w, age),
                "seenSecondsAgo": round(age, 1),
                "clockSkewSeconds": round(w["clock_skew"] or 0.0, 3),
            }
            for w in self.workers
            for age in [max(0.0, self.now - w["seen_at"])]
        ]


def _state(worker: dict[str, Any], age: float) -> str:
    if worker["stopped_at"] is not None:
        return "stopped"
    return "silent" if age > SILENT else "running"


def read(services: Services) -> Liveness:
    return Liveness(
        services.store.workers(), services.clock(), services.settings.worker_stale_after
    )
