"""GBG's state answers (v1 and v2) read into a GbgState, personal data dropped by choice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from receiver.domain.model import GbgState, normalize_status
from receiver.domain.privacy import JOURNEY, STATE, label, minimal, time_value
from receiver.errors import GbgUnavailable

log = logging.getLogger(__name__)

_YEAR_10000 = 253402300800.0  # the first second no RFC 3339 time can show


def parse_state(body: dict[str, Any], *, store_pii: bool = False) -> GbgState:
    """One typed observation from a v1 or v2 state answer."""
    raw_status = body.get("status")
    if not isinstance(raw_status, str) or not raw_status:
        raise GbgUnavailable("state answer without a status", kind="garbage")
    status = normalize_status(raw_status)
    if status is None:
        # Not one of GBG's three: no proof of anything. An error under the policy (backoff,
        # then give up), never an ending; the metric and the log line say which status.
        log.warning("gbg.unknown_status", extra={"gbg_status": raw_status[:64]})
        raise GbgUnavailable(f"undocumented status {raw_status[:64]!r}", kind="unknown_status")
    document = body if store_pii else minimal(body, STATE)
    context = _dict(document.get("context"))
    process = _dict(context.get("process"))
    journey_doc = _dict(process.get("journey"))
    meta = _dict(body.get("metaData"))
    # Every key, null where GBG has none yet (endedAt stays null until the journey ends);
    # each by its meaning whatever RECEIVER_STORE_PII says: it is forwarded.
    journey = {k: minimal(journey_doc.get(k), JOURNEY[k]) for k in JOURNEY} if journey_doc else {}
    if not journey and meta:
        # v1 says "completedTime": "" while in progress: no end yet is null, never "".
        journey = {
            "startedAt": time_value(meta.get("createdTime")),
            "endedAt": time_value(meta.get("completedTime")),
        }
    # The outcome only from GBG's documented field, each step's result.outcome (the last
    # step's wins), and only as a short label: it is forwarded to the application.
    outcome = None
    for step in process.get("steps") or []:
        found = label(_dict(_dict(step).get("result")).get("outcome"))
        if found:
            outcome = found
    result = context.get("result")
    return GbgState(
        status=status,
        gbg_status=raw_status[:64],
        outcome=outcome,
        result=result if isinstance(result, dict) else None,
        journey=journey or None,
        completed_at=_timestamp(journey_doc.get("endedAt") or meta.get("completedTime")),
        document=document,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from GBG's ISO 8601 text or epoch number (s or ms); None
    for anything unreadable or outside the years 1970-9999 (no stored time is absurd)."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) / (1000.0 if value > 1e11 else 1.0)
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)  # Python 3.11 reads "Z" too
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # GBG's times are UTC
        seconds = parsed.timestamp()
    if seconds is None or not 0 <= seconds < _YEAR_10000:
        return None
    return seconds
