"""/api/v1 for the application that started the journeys (bearer tokens)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from typing import Any

from flask import Blueprint, request

from receiver import notify, usecases
from receiver.domain.model import INSTANCE_ID
from receiver.errors import GbgAuthError, GbgError, GbgRejected, Problem, Throttled
from receiver.shapes import (
    delivery_json,
    event_json,
    instance_json,
    outbox_json,
    quarantined_json,
    timeline_json,
)
from receiver.store.outbox import STATUSES as MESSAGE_STATUSES
from receiver.store.schema import MAX_ID
from receiver.web import context, reads
from receiver.web.bodies import parse_object, read_body

log = logging.getLogger("receiver.api")
# visible ASCII, spaces only inside: what a header carries unchanged (the document says the same)
IDEMPOTENCY_KEY = re.compile(r"[!-~]([ -~]{0,253}[!-~])?")
bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def require_token() -> None:
    """Bearer tokens from RECEIVER_API_TOKENS; none configured means the API is closed."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    ok = False
    for token in context.services().settings.api_tokens:
        ok |= hmac.compare_digest(presented.strip().encode(), token.encode())
    if not ok or scheme.lower() != "bearer":
        raise Problem(
            "unauthorized",
            "a valid bearer token is required",
            {"WWW-Authenticate": 'Bearer realm="gbg-receiver"'},
        )


@bp.post("/instances")
def register() -> tuple[dict[str, Any], int]:
    payload = parse_object(read_body(request), nul=True)  # only the reference is kept
    instance_id = payload.get("instanceId")
    if not isinstance(instance_id, str) or not INSTANCE_ID.fullmatch(instance_id):
        raise Problem(
            "invalid-instance-id",
            "instanceId: 1-128 characters of A-Z a-z 0-9 . _ : @ -",
            field="instanceId",
        )
    services = context.services()
    decision = usecases.register(services, instance_id, _reference(payload))
    return instance_json(decision.instance), 201 if decision.created else 200


@bp.post("/journeys")
def start_journey() -> Any:
    """Start a journey at GBG with the server's token, and register its instance; with an
    Idempotency-Key, a retry within a day answers the first start's instance."""
    payload = parse_object(read_body(request), nul=True)  # only the reference is kept
    resource_id, journey_context = payload.get("resourceId"), payload.get("context", {})
    if not isinstance(resource_id, str) or not 0 < len(resource_id) <= 256:
        raise Problem(
            "invalid-field", "resourceId: a string of 1-256 characters", field="resourceId"
        )
    if not isinstance(journey_context, dict):
        raise Problem("invalid-field", "context: a JSON object", field="context")
    reference = _reference(payload)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise Problem(
            "invalid-parameter",
            "Idempotency-Key: 1-255 visible ASCII characters (spaces only inside)",
            field="Idempotency-Key",
        )
    services = context.services()
    if services.gbg is None:
        raise Problem("gbg-not-configured", "set RECEIVER_GBG_CLIENT_ID and _CLIENT_SECRET")
    if key is not None and (replayed := _replay(key, payload)) is not None:
        return replayed
    try:
        decision = usecases.start_journey(services, resource_id, journey_context, reference)
    except BaseException as exc:
        if key is not None:  # nothing was started: a retry with the key may try again
            services.store.give_back_key(key)
        if isinstance(exc, GbgError):
            raise _start_failed(exc) from None
        raise
    if key is not None:
        services.store.complete_key(key, decision.instance.instance_id)
    return instance_json(decision.instance), 201


def _replay(key: str, payload: dict[str, Any]) -> Any:
    """Claim ``key`` for this start (None), or answer what its first request started."""
    services = context.services()
    body_hash = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    held = services.store.claim_key(key, body_hash, services.clock())
    if held is None:
        return None
    first_hash, instance_id = held
    if not hmac.compare_digest(first_hash, body_hash):
        raise Problem("idempotency-key-reused", "this key came with another body today")
    if instance_id is None:
        under_way = "the first request with this key is not done yet"
        raise Problem("request-in-progress", under_way, {"Retry-After": "1"})
    return instance_json(reads.known(instance_id)), 201, {"Idempotent-Replayed": "true"}


def _start_failed(exc: GbgError) -> Problem:
    """GBG's failure to start a journey, as the application's problem."""
    if isinstance(exc, GbgRejected):
        return Problem("gbg-refused-journey", f"GBG answered {exc.status}")
    if isinstance(exc, GbgAuthError):
        return Problem("gbg-credentials-refused", "see the server's log")
    wait = {"Retry-After": str(math.ceil(getattr(exc, "retry_after", None) or 5))}
    return Problem("gbg-unavailable", "no journey was started", wait)


@bp.get("/instances/<instance_id>")
def show(instance_id: str) -> dict[str, Any]:
    return instance_json(reads.known(instance_id))


@bp.get("/instances/<instance_id>/events")
def instance_events(instance_id: str) -> dict[str, Any]:
    """One instance's status changes, oldest first."""
    reads.known(instance_id)
    rows = context.services().store.events_for(instance_id)
    return {"events": [event_json(r) for r in rows]}


@bp.get("/instances/<instance_id>/timeline")
def instance_timeline(instance_id: str) -> dict[str, Any]:
    """Everything that happened to one instance, in time order."""
    found = reads.known(instance_id)
    history = context.services().store.history(instance_id)
    return {"instanceId": instance_id, "timeline": timeline_json(found, history)}


@bp.get("/instances/<instance_id>/deliveries")
def instance_deliveries(instance_id: str) -> dict[str, Any]:
    """The webhook deliveries stored for one instance, oldest first."""
    reads.known(instance_id)
    after = reads.int_arg(request.args, "after", 0, 0, MAX_ID)
    limit = reads.int_arg(request.args, "limit", 100, 1, reads.MAX_PAGE)
    rows = context.services().store.deliveries_for(instance_id, after=after, limit=limit)
    return {
        "deliveries": [delivery_json(r) for r in rows],
        "nextAfter": rows[-1]["id"] if rows else after,
    }


@bp.get("/instances/<instance_id>/state")
def instance_state(instance_id: str) -> dict[str, Any]:
    """The latest state document as stored (minimised unless RECEIVER_STORE_PII); null
    before the first fetch and after retention or erasure."""
    return {"state": reads.known(instance_id).state}


@bp.get("/instances")
def list_instances() -> dict[str, Any]:
    page, next_cursor = reads.instance_page(request.args, 100)
    return {"instances": [instance_json(i) for i in page], "nextCursor": next_cursor}


@bp.post("/instances/<instance_id>/poll")
def poll(instance_id: str) -> dict[str, Any]:
    services = context.services()
    reads.known(instance_id)
    if services.gbg is None:
        raise Problem("gbg-not-configured", "set RECEIVER_GBG_CLIENT_ID and _CLIENT_SECRET")
    try:
        instance = usecases.poll_now(services, instance_id)
    except Throttled as exc:
        wait = {"Retry-After": str(math.ceil(exc.retry_after))}
        if exc.gbg_down:
            raise Problem("gbg-unavailable", "polling is paused while GBG fails", wait) from None
        raise Problem("rate-limited", "GBG's fetch rate is used up for now", wait) from None
    if instance is None:
        raise Problem("poll-in-progress", "a poller is fetching it now", {"Retry-After": "1"})
    return instance_json(instance)


@bp.delete("/instances/<instance_id>")
def erase(instance_id: str) -> dict[str, Any]:
    """Erase the instance's personal data and deliveries; its status and events stay."""
    erased = usecases.erase(context.services(), reads.known(instance_id).instance_id)
    if erased is None:
        raise Problem("unknown-instance", "no such instance")
    return instance_json(erased)


@bp.get("/outbox")
def outbox() -> dict[str, Any]:
    """Messages to the application, oldest first: ?status=pending|delivered|failed,
    ?instanceId= for one instance's."""
    status = request.args.get("status")
    if status is not None and status not in MESSAGE_STATUSES:
        raise Problem(
            "invalid-parameter",
            f"status: one of {', '.join(MESSAGE_STATUSES)}",
            field="status",
        )
    instance_id = request.args.get("instanceId")
    if instance_id is not None and not INSTANCE_ID.fullmatch(instance_id):
        raise Problem("invalid-parameter", "instanceId: an instance id", field="instanceId")
    after = reads.int_arg(request.args, "after", 0, 0, MAX_ID)
    limit = reads.int_arg(request.args, "limit", 100, 1, reads.MAX_PAGE)
    rows = context.services().store.messages(
        status=status, limit=limit, after=after, instance_id=instance_id
    )
    return {
        "messages": [outbox_json(m) for m in rows],
        "nextAfter": rows[-1].seq if rows else after,
    }


@bp.post("/outbox/<int:message_id>/replay")
def replay(message_id: int) -> dict[str, Any]:
    """Send a message again from now (a failed one, typically), with a fresh schedule."""
    message = notify.replay(context.services(), message_id)
    if message is None:
        raise Problem("unknown-message", "no such message")
    return outbox_json(message)


@bp.get("/quarantine")
def quarantine() -> dict[str, Any]:
    """Webhook deliveries set aside because they could not be folded, oldest first."""
    after = reads.int_arg(request.args, "after", 0, 0, MAX_ID)
    limit = reads.int_arg(request.args, "limit", 100, 1, reads.MAX_PAGE)
    rows = context.services().store.quarantined(after=after, limit=limit)
    return {
        "deliveries": [quarantined_json(r) for r in rows],
        "nextAfter": rows[-1]["id"] if rows else after,
    }


@bp.post("/quarantine/<int:delivery_id>/refold")
def refold(delivery_id: int) -> dict[str, Any]:
    """Put a delivery set aside back in the inbox (after a fix), with fresh tries."""
    if not 0 < delivery_id <= MAX_ID or not usecases.refold(context.services(), delivery_id):
        raise Problem("unknown-delivery", "no such delivery set aside")
    return {"id": delivery_id, "refolded": True}


@bp.get("/events")
def events() -> dict[str, Any]:
    after = reads.int_arg(request.args, "after", 0, 0, MAX_ID)
    limit = reads.int_arg(request.args, "limit", 100, 1, reads.MAX_PAGE)
    rows = context.services().store.events_after(after, limit)
    return {
        "events": [event_json(r) for r in rows],
        "nextAfter": rows[-1]["seq"] if rows else after,
    }


def _reference(payload: dict[str, Any]) -> str | None:
    reference = payload.get("reference")
    if reference is not None and (
        not isinstance(reference, str) or len(reference) > 256 or "\x00" in reference
    ):
        raise Problem(
            "invalid-field",
            "reference: a string of at most 256 characters, no NUL",
            field="reference",
        )
    return reference
