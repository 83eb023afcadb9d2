"""/api/v1 for the application that started the journeys, and the health checks."""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request

from receiver import poller
from receiver.errors import Problem
from receiver.reconcile import INSTANCE_ID, STATUSES, Instance, Registered
from receiver.services import Services
from receiver.store import decode_cursor
from receiver.webhook import parse_object, read_body

log = logging.getLogger("receiver.api")
bp = Blueprint("api", __name__, url_prefix="/api/v1")
health = Blueprint("health", __name__)

MAX_PAGE = 1000


def _services() -> Services:
    services: Services = current_app.extensions["receiver"]
    return services


@bp.before_request
def require_token() -> None:
    """Bearer tokens from RECEIVER_API_TOKENS; none configured means the API is closed."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    ok = False
    for token in _services().settings.api_tokens:
        ok |= hmac.compare_digest(presented.strip().encode(), token.encode())
    if not ok or scheme.lower() != "bearer":
        raise Problem(
            401,
            "Unauthorized",
            "a valid bearer token is required",
            {"WWW-Authenticate": 'Bearer realm="gbg-receiver"'},
        )


@bp.post("/instances")
def register() -> tuple[dict[str, Any], int]:
    payload = parse_object(read_body())
    instance_id = payload.get("instanceId")
    if not isinstance(instance_id, str) or not INSTANCE_ID.fullmatch(instance_id):
        raise Problem(
            422, "Invalid instance id", "instanceId: 1-128 characters of A-Z a-z 0-9 . _ : @ -"
        )
    reference = payload.get("reference")
    if reference is not None and (not isinstance(reference, str) or len(reference) > 256):
        raise Problem(422, "Invalid reference", "reference: a string of at most 256 characters")
    services = _services()
    decision = services.store.apply(Registered(instance_id, reference), services.clock())
    return instance_json(decision.instance), 201 if decision.created else 200


@bp.get("/instances/<instance_id>")
def show(instance_id: str) -> dict[str, Any]:
    return instance_json(_known(instance_id))


@bp.get("/instances")
def list_instances() -> dict[str, Any]:
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise Problem(400, "Invalid status", f"status: one of {', '.join(STATUSES)}")
    cursor = request.args.get("cursor") or None
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError:
            raise Problem(400, "Invalid cursor", "cursor: use nextCursor as given") from None
    page, next_cursor = _services().store.list_instances(
        status=status, limit=_int_arg("limit", 100, 1, MAX_PAGE), cursor=cursor
    )
    return {"instances": [instance_json(i) for i in page], "nextCursor": next_cursor}


@bp.post("/instances/<instance_id>/poll")
def poll(instance_id: str) -> dict[str, Any]:
    services = _services()
    _known(instance_id)
    if services.gbg is None:
        raise Problem(503, "GBG not configured", "set RECEIVER_GBG_CLIENT_ID and _CLIENT_SECRET")
    instance = poller.poll_now(services, instance_id)
    if instance is None:
        raise Problem(409, "Poll in progress", "a poller is fetching it now", {"Retry-After": "1"})
    return instance_json(instance)


@bp.get("/events")
def events() -> dict[str, Any]:
    after = _int_arg("after", 0, 0, 2**63 - 1)
    rows = _services().store.events_after(after, _int_arg("limit", 100, 1, MAX_PAGE))
    return {
        "events": [
            {
                "seq": r["seq"],
                "instanceId": r["instance_id"],
                "status": r["status"],
                "previousStatus": r["previous_status"],
                "source": r["source"],
                "at": rfc3339(r["at"]),
            }
            for r in rows
        ],
        "nextAfter": rows[-1]["seq"] if rows else after,
    }


@health.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/openapi.json")
def openapi() -> Response:
    document = (Path(__file__).parent / "openapi.json").read_bytes()
    return Response(document, content_type="application/json")


@health.get("/metrics")
def metrics() -> Response:
    services = _services()
    text, content_type = services.metrics.render(services.store, services.clock())
    return Response(text, content_type=content_type)


@health.get("/readyz")
def readyz() -> tuple[dict[str, str], int]:
    try:
        _services().store.ping()
    except Exception:  # readiness answers for any failure of the store, whatever its kind
        log.warning("readyz.store_down")
        return {"status": "store unavailable"}, 503
    return {"status": "ready"}, 200


def _known(instance_id: str) -> Instance:
    found = None
    if INSTANCE_ID.fullmatch(instance_id):
        found = _services().store.get(instance_id)
    if found is None:
        raise Problem(404, "Not found", "no such instance")
    return found


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Problem(400, f"Invalid {name}", f"{name}: a whole number from {low} to {high}")
    return value


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
