"""The contract's JSON shapes, shared by the API, the CLI and the forwarder."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from receiver.domain.model import Event, Instance
from receiver.domain.privacy import JOURNEY, RESULT, STEP, minimal


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instance_json(i: Instance) -> dict[str, Any]:
    """The contract's instance shape."""
    return {
        "instanceId": i.instance_id,
        "reference": i.reference,
        "instanceUrl": i.instance_url,
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
        "lastError": last_error_json(i.last_error),
        "webhookClaim": i.webhook_claim,
        "source": i.source,
        "updatedAt": rfc3339(i.updated_at),
        "steps": steps(i.state),
    }


def last_error_json(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """Why the last fetch failed, and how many more errors polling takes; None since the
    last fetch that succeeded."""
    if not error:
        return None
    return error | {"at": rfc3339(error.get("at"))}


def steps(state: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """What GBG decided, step by step: node, status, outcome and advice codes (never a
    step's note). None while no state is stored."""
    process = ((state or {}).get("context") or {}).get("process")
    found = minimal(process.get("steps"), [STEP]) if isinstance(process, dict) else None
    return found if isinstance(found, list) else None


# How a status was found, as the timeline says it ("source" in the instance and events).
DECIDED_BY = {
    "webhook": "a state fetch that a webhook prompted",
    "poll": "polling alone (no webhook came before)",
    "api": "an operator's poll",
}
_ORDER = {"registered": 0, "webhook": 1, "fetch": 2, "status": 3, "forward": 4}


def timeline_json(instance: Instance, history: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """Everything that happened to an instance, in time order: its registration, each
    webhook delivery, each fetch, each status change with what decided it, and each
    attempt at telling the application (``history``: ``Store.history``)."""
    entries: list[dict[str, Any]] = [{"at": instance.registered_at, "kind": "registered"}]
    for d in history["deliveries"]:
        entries.append(
            {
                "at": d["received_at"],
                "kind": "webhook",
                "claim": d["claim"],
                "peer": d["peer"],
                "folded": d["folded_at"] is not None,
            }
        )
    for e in history["events"]:
        decided = (
            "its time to live ran out"
            if e["status"] == "expired"
            else DECIDED_BY.get(e["source"], e["source"])
        )
        entries.append(
            {
                "at": e["at"],
                "kind": "status",
                "from": e["previous_status"],
                "to": e["status"],
                "source": e["source"],
                "decidedBy": decided,
            }
        )
    for a in history["attempts"]:
        entry = {"at": a["at"], "kind": a["kind"], "outcome": a["outcome"]}
        if a["kind"] == "fetch":
            entry |= {"gbgStatus": a["gbg_status"], "seconds": a["seconds"]}
        else:
            entry["messageId"] = a["seq"]
        entries.append(entry)
    entries.sort(key=lambda entry: (entry["at"], _ORDER[entry["kind"]]))
    return [entry | {"at": rfc3339(entry["at"])} for entry in entries]


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


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    """One stored webhook delivery (its body minimised unless PII storage is on)."""
    try:
        body: Any = json.loads(row["body"]) if row["body"] else None
    except ValueError:
        body = None  # stored as received, and not JSON: not shown
    return {
        "id": row["id"],
        "receivedAt": rfc3339(row["received_at"]),
        "foldedAt": rfc3339(row["folded_at"]),
        "peer": row["peer"],
        "claim": row["claim"],
        "headers": row["headers"],
        "body": body,
    }


def quarantined_json(row: dict[str, Any]) -> dict[str, Any]:
    """One delivery set aside because it could not be folded, and why."""
    return {
        "id": row["id"],
        "instanceId": row["instance_id"],
        "receivedAt": rfc3339(row["received_at"]),
        "foldTries": row["fold_tries"],
        "foldError": row["fold_error"],
        "quarantinedAt": rfc3339(row["quarantined_at"]),
    }


def message_json(seq: int, event: Event, instance: Instance) -> dict[str, Any]:
    """The message to the application for one status change (Standard Webhooks body).

    No personal data whatever RECEIVER_STORE_PII says: the result and the journey pass
    through the allow-list; the reference is the application's own.
    """
    shown = instance_json(instance) | {
        "result": minimal(instance.result, RESULT),
        "journey": minimal(instance.journey, JOURNEY),
    }
    shown.pop("webhookClaim")  # GBG's unpublished body: not the application's to rely on
    return {
        "type": f"journey.{event.status}",
        "timestamp": rfc3339(event.at),
        "data": {"seq": seq, "previousStatus": event.previous_status, "instance": shown},
    }


def outbox_json(message: Any) -> dict[str, Any]:
    """One outbox message as the API and the CLI show it."""
    return {
        "id": message.seq,
        "webhookId": webhook_id(message.seq),
        "instanceId": message.instance_id,
        "status": message.status,
        "attempts": message.attempts,
        "createdAt": rfc3339(message.created_at),
        "nextAttemptAt": rfc3339(message.next_attempt_at),
        "lastAttemptAt": rfc3339(message.last_attempt_at),
        "lastError": message.last_error,
        "deliveredAt": rfc3339(message.delivered_at),
        "body": json.loads(message.body),
    }


def webhook_id(seq: int) -> str:
    """The message's Standard Webhooks id: the same for every attempt (idempotency key)."""
    return f"msg_gbgr_{seq}"
