"""When to fetch an instance's state next: GBG's recommended polling policy, exactly.

Pure: no I/O, no clock; ``now`` is an argument. GBG's policy: poll every 10 s; add 5 s
for each consecutive error; give up after 30 consecutive errors; reset after a success;
stop once the status is final. On top of it, and never faster than it: a 429's
Retry-After is honoured, instances running for hours slow down toward a ceiling, and a
small deterministic jitter keeps many instances from polling in lockstep. The one place
that asks sooner: after a webhook, which says the end is seconds away, a few follow-up
fetches (``follow_up``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from receiver.config import Settings

# A journey still running after an hour is waiting on a person; polling it every 10 s
# spends GBG's rate budget for nothing, so from then on the interval grows with its age.
SLOWDOWN_AFTER = 3600.0
# GBG-wide failures (no connection, 5xx, refused token) in a row, across every instance
# and worker, before they count as GBG's outage rather than each instance's error.
WIDE_AFTER = 3


@dataclass(frozen=True)
class Policy:
    """The numbers of the schedule, all from configuration."""

    webhook_timeout: float = 300.0
    confirm_delay: float = 1.0
    interval: float = 10.0
    error_backoff: float = 5.0
    max_errors: int = 30
    max_interval: float = 300.0
    ttl: float = 604800.0
    jitter: float = 0.02  # fraction of the interval added at most; 0 pins exact times
    followups: tuple[float, ...] = (1.0, 2.0, 2.0, 2.0)  # seconds apart, after the confirmation

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            webhook_timeout=settings.webhook_timeout,
            confirm_delay=settings.confirm_delay,
            interval=settings.poll_interval,
            error_backoff=settings.poll_error_backoff,
            max_errors=settings.poll_max_errors,
            max_interval=settings.poll_max_interval,
            ttl=settings.instance_ttl,
            followups=settings.webhook_followups,
        )


def next_poll_at(
    policy: Policy,
    *,
    instance_id: str,
    registered_at: float,
    now: float,
    errors: int = 0,
    retry_after: float | None = None,
) -> float | None:
    """The next fetch time after a fetch at ``now``, or None when polling gives up.

    ``errors`` is the number of consecutive failed fetches including this one (0 after
    a success).
    """
    if errors >= policy.max_errors:
        return None
    age = max(0.0, now - registered_at)
    interval = min(policy.max_interval, policy.interval * max(1.0, age / SLOWDOWN_AFTER))
    interval = max(interval, policy.interval) + policy.error_backoff * errors
    interval *= 1.0 + policy.jitter * _spread(instance_id, errors)
    if retry_after is not None:
        interval = max(interval, retry_after)
    return now + interval


def follow_up(
    policy: Policy, *, webhook_at: float | None, now: float, regular: float | None
) -> float | None:
    """The next fetch after one at ``now`` that found the journey still running.

    A webhook at ``webhook_at`` says the journey ends within seconds (GBG's module fires
    before the end): after its confirming fetch, follow-ups come ``policy.followups``
    seconds apart, then GBG's own schedule (``regular``) again. Sooner than GBG's base
    interval only here: at most len(followups) extra fetches per webhook, all under the
    shared rate limit.
    """
    if webhook_at is None or regular is None:
        return regular
    due = webhook_at + policy.confirm_delay
    for step in policy.followups:
        due += step
        if due > now:
            return min(regular, due)
    return regular


def _spread(instance_id: str, errors: int) -> float:
    """A stable number in [0, 1) per instance and attempt, so no randomness is needed."""
    return zlib.crc32(f"{instance_id}:{errors}".encode()) / 2**32


def gbg_pause(policy: Policy, streak: int) -> float | None:
    """How long every fetch waits after the ``streak``-th GBG-wide failure in a row, or
    None while the streak is too short to be GBG's rather than chance.

    GBG's per-instance arithmetic applied to GBG as a whole (the interval plus the backoff
    per error, up to the ceiling): one probe per pause, and no instance pays for it.
    """
    if streak < WIDE_AFTER:
        return None
    return min(policy.max_interval, policy.interval + policy.error_backoff * streak)
