"""The domain's nouns: an instance, GBG's state, the observations, events and decisions.

Pure data: no I/O, no clock. Statuses are ours (``in_progress``, ``completed``,
``failed``, ``expired``); GBG's own spelling is kept beside them as ``gbg_status``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# GBG's instance ids are UUIDs; this admits every id GBG or an operator may use and
# nothing that could smuggle a path, a query or a control character.
INSTANCE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")

IN_PROGRESS, COMPLETED, FAILED, EXPIRED = "in_progress", "completed", "failed", "expired"
STATUSES = (IN_PROGRESS, COMPLETED, FAILED, EXPIRED)
FINAL = frozenset({COMPLETED, FAILED})

# GBG documents three statuses; any spelling of them counts, anything else is unknown.
_SPELLINGS = {"inprogress": IN_PROGRESS, "completed": COMPLETED, "failed": FAILED}


def normalize_status(raw: Any) -> str | None:
    """Map GBG's status in any spelling or case (InProgress, IN_PROGRESS...) to ours."""
    if not isinstance(raw, str):
        return None
    return _SPELLINGS.get(re.sub(r"[^a-z]", "", raw.lower()))


@dataclass(frozen=True)
class Instance:
    """One journey run, as the business's application reads it."""

    instance_id: str
    registered_at: float
    updated_at: float
    status: str = IN_PROGRESS
    source: str = "api"
    reference: str | None = None
    instance_url: str | None = None  # where the person takes the journey (GBG v2 start)
    gbg_status: str | None = None
    outcome: str | None = None
    result: dict[str, Any] | None = None
    journey: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    webhook_claim: str | None = None
    webhook_received_at: float | None = None
    last_polled_at: float | None = None
    completed_at: float | None = None
    next_poll_at: float | None = None
    poll_errors: int = 0
    polling_gave_up: bool = False
    # Why the last fetch failed: {"kind", "httpStatus", "message", "at"}; None since the
    # last fetch that succeeded (or before any failed).
    last_error: dict[str, Any] | None = None


@dataclass(frozen=True)
class GbgState:
    """A parsed answer of GBG's state API (v1 or v2)."""

    status: str
    gbg_status: str
    outcome: str | None = None
    result: dict[str, Any] | None = None
    journey: dict[str, Any] | None = None
    completed_at: float | None = None
    document: dict[str, Any] | None = None


@dataclass(frozen=True)
class Registered:
    instance_id: str
    reference: str | None = None
    instance_url: str | None = None


@dataclass(frozen=True)
class WebhookReceived:
    instance_id: str
    claim: str | None = None


@dataclass(frozen=True)
class Fetched:
    instance_id: str
    state: GbgState
    by: str = "poll"  # "api" when an operator asked for the fetch
    started_at: float | None = None  # when the request went out
    seconds: float | None = None  # how long GBG took to answer


@dataclass(frozen=True)
class FetchFailed:
    instance_id: str
    error: str  # the kind: http_404, timeout, garbage, unknown_status, token, internal...
    retry_after: float | None = None
    started_at: float | None = None
    gbg_wide: bool = False  # GBG itself is failing: not this instance's error to count
    message: str | None = None  # what went wrong, in our words (never GBG's body)
    seconds: float | None = None  # how long the attempt took

    def as_error(self, at: float, errors_left: int) -> dict[str, Any]:
        """The instance's ``last_error`` this failure makes, with how many more errors
        polling takes before it gives up."""
        status = self.error.removeprefix("http_")
        return {
            "kind": self.error,
            "httpStatus": int(status) if status.isdigit() else None,
            "message": (self.message or self.error)[:256],
            "at": at,
            "errorsLeft": errors_left,
        }


@dataclass(frozen=True)
class TtlPassed:
    instance_id: str


Observation = Registered | WebhookReceived | Fetched | FetchFailed | TtlPassed


@dataclass(frozen=True)
class Event:
    instance_id: str
    status: str
    previous_status: str
    source: str
    at: float


@dataclass(frozen=True)
class Decision:
    instance: Instance
    event: Event | None
    created: bool


class UnknownInstance(LookupError):
    """A fetch result or expiry was observed for an instance that is not stored."""
