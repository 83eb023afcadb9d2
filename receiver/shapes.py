"""The contract's JSON shapes, shared by the API, the CLI and (later) the forwarder."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from receiver.domain.model import Instance


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instance_json(i: Instance) -> dict[str, Any]:
    """The contract's instance shape."""
    return {
        "instanceId": i.instance_id,
        "reference": i.reference,
        "status": i.status,
        "gbgStatus": i.gbg_status,
        "outcome": i.outcome,
        "result": i.result,
        "journey": i.journey,
        "registeredAt": rfc3339(i.registered_at),
        "webhookReceivedAt": rfc3339(i.webhook_received_at),
        "lastPolledAt": rfc3339(i.last_polled_at),
        "completedAt": rfc3339(i.completed_at),
        "nextPollAt": rfc3339(i.next_poll_at),
        "pollErrors": i.poll_errors,
        "pollingGaveUp": bool(i.polling_gave_up),
        "webhookClaim": i.webhook_claim,
        "source": i.source,
        "updatedAt": rfc3339(i.updated_at),
    }


def event_json(row: dict[str, Any]) -> dict[str, Any]:
    """One entry of the changes feed."""
    return {
        "seq": row["seq"],
        "instanceId": row["instance_id"],
        "status": row["status"],
        "previousStatus": row["previous_status"],
        "source": row["source"],
        "at": rfc3339(row["at"]),
    }
