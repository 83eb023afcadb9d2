"""When to try a message to the application again: about at once, 5 s, 5 min, 30 min,
2 h, 5 h, 10 h, 10 h, then give up (the message is kept as failed, replayable).

Pure: ``now`` is an argument. A receiver that answers Retry-After is waited for, up to
MAX_RETRY_AFTER, never sooner than the schedule says.
"""

from __future__ import annotations

# Seconds before each attempt: the first goes at once, the eighth ten hours after the
# seventh. About 28 hours in all, so a receiver down over a night still gets everything.
DELAYS = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_RETRY_AFTER = 3600.0


def next_attempt_at(failed_attempts: int, now: float, retry_after: float | None) -> float | None:
    """After ``failed_attempts`` attempts in all have failed, the last at ``now``: when
    to try again, or None when the message has had all its attempts."""
    if failed_attempts >= len(DELAYS):
        return None
    delay = DELAYS[failed_attempts]
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return now + delay
