"""GBG's state answers (v1 and v2) read into a GbgState, personal data dropped by choice."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from receiver.domain.model import IN_PROGRESS, GbgState, normalize_status
from receiver.errors import GbgUnavailable

log = logging.getLogger(__name__)

_JOURNEY_KEYS = ("name", "id", "version", "startedAt", "endedAt", "durationMilliSec")


def parse_state(body: dict[str, Any], *, store_pii: bool = False) -> GbgState:
    """One typed observation from a v1 or v2 state answer."""
    raw_status = body.get("status")
    if not isinstance(raw_status, str) or not raw_status:
        raise GbgUnavailable("state answer without a status", kind="garbage")
    status = normalize_status(raw_status)
    if status is None:
        # An undocumented status is no proof the journey ended: keep polling, say so.
        log.warning("gbg.unknown_status", extra={"gbg_status": raw_status[:64]})
        status = IN_PROGRESS
    context = _dict(body.get("context"))
    process = _dict(context.get("process"))
    journey_doc = _dict(process.get("journey"))
    meta = _dict(body.get("metaData"))
    journey = {k: journey_doc[k] for k in _JOURNEY_KEYS if k in journey_doc}
    if not journey and meta:
        journey = {"startedAt": meta.get("createdTime"), "endedAt": meta.get("completedTime")}
    outcome = None
    for step in process.get("steps") or []:
        found = _dict(_dict(step).get("result")).get("outcome")
        if isinstance(found, str) and found:
            outcome = found
    result = context.get("result")
    return GbgState(
        status=status,
        gbg_status=raw_status[:64],
        outcome=outcome[:256] if outcome else None,
        result=result if isinstance(result, dict) else None,
        journey=journey or None,
        completed_at=_timestamp(journey_doc.get("endedAt") or meta.get("completedTime")),
        document=body if store_pii else _without_subject(body),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _without_subject(value: Any) -> Any:
    """A copy with every ``subject`` (GBG's personal data) removed, at any depth."""
    if isinstance(value, dict):
        return {k: _without_subject(v) for k, v in value.items() if k != "subject"}
    if isinstance(value, list):
        return [_without_subject(v) for v in value]
    return value


def _timestamp(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # GBG's times are UTC
    return parsed.timestamp()
