"""Every kind of problem an answer can be: its status, title and what a client should do.

A problem's ``type`` is ``/problems/{kind}`` (a URI reference, resolved against the
service's address, where ``GET /problems/{kind}`` describes it): a program tells problems
apart by it, never by the title or the detail, which are for people and may change.
"""

from __future__ import annotations

BASE = "/problems/"

# kind: (status, title, what it means and what to do)
KINDS: dict[str, tuple[int, str, str]] = {
    "unauthorized": (
        401,
        "Unauthorized",
        "No credentials, or wrong ones: the webhook's Basic credentials or API key, or the "
        "API's bearer token. Do not retry with the same credentials.",
    ),
    "forbidden": (403, "Forbidden", "Answered to the internal network only (metrics, dashboard)."),
    "malformed-body": (400, "Malformed body", "The body is not JSON. Do not retry it as is."),
    "body-too-large": (
        413,
        "Content Too Large",
        "The body is over RECEIVER_MAX_BODY_BYTES (1 MiB by default). Do not retry it as is.",
    ),
    "unprocessable-body": (
        422,
        "Unprocessable body",
        "JSON, but not what the endpoint takes: not an object, too deep, a NUL character, a "
        "number too large. Do not retry it as is.",
    ),
    "missing-instance-id": (
        422,
        "Missing instance id",
        "A webhook with no instance id at any of the places GBG puts it, nor in ?instanceId=.",
    ),
    "invalid-instance-id": (
        422,
        "Invalid instance id",
        "Instance ids are 1-128 characters of A-Z a-z 0-9 . _ : @ -. `field` names where.",
    ),
    "invalid-field": (
        422,
        "Invalid field",
        "A field of the body has a value the endpoint does not take; `field` names it.",
    ),
    "invalid-parameter": (
        400,
        "Invalid parameter",
        "A query parameter or request header has a value the endpoint does not take; "
        "`field` names it.",
    ),
    "invalid-cursor": (
        400,
        "Invalid cursor",
        "A cursor that this service did not give (or for another listing): pass nextCursor "
        "back exactly as given, or start again without one.",
    ),
    "unknown-instance": (404, "Unknown instance", "No instance has this id (or it was purged)."),
    "instance-not-folded-yet": (
        404,
        "Instance not folded yet",
        "Webhooks for this id were acknowledged and wait in the inbox for a worker: retry in "
        "a second. If this lasts, no worker runs (see /readyz).",
    ),
    "unknown-message": (404, "Unknown message", "No message to the application has this id."),
    "unknown-delivery": (404, "Unknown delivery", "No delivery set aside has this id."),
    "idempotency-key-reused": (
        422,
        "Idempotency-Key reused",
        "This Idempotency-Key came with another body within the day: use a new key for a "
        "new request.",
    ),
    "request-in-progress": (
        409,
        "Request in progress",
        "The first request with this Idempotency-Key is still under way: retry after "
        "Retry-After for its answer.",
    ),
    "poll-in-progress": (
        409,
        "Poll in progress",
        "A worker is fetching this instance's state right now: read it after Retry-After.",
    ),
    "superseded": (
        409,
        "Superseded",
        "A later status of the message's instance was delivered or is on its way: sending "
        "this one again would deliver it out of order.",
    ),
    "rate-limited": (
        429,
        "Rate limited",
        "GBG's state fetches are used up for now (the shared rate, or GBG's own 429): retry "
        "after Retry-After.",
    ),
    "gbg-not-configured": (
        503,
        "GBG not configured",
        "The service has no GBG credentials (RECEIVER_GBG_CLIENT_ID and _CLIENT_SECRET).",
    ),
    "gbg-unavailable": (
        503,
        "GBG unavailable",
        "GBG does not answer, or fails (polling is paused): retry after Retry-After. "
        "Nothing was started.",
    ),
    "gbg-refused-journey": (
        400,
        "GBG refused the journey",
        "GBG answered the start with a 4xx: the resourceId or context is not one it takes.",
    ),
    "gbg-credentials-refused": (
        502,
        "GBG refused our credentials",
        "GBG's token endpoint refused the service's credentials: its operators must fix "
        "RECEIVER_GBG_*. Retrying does not help until then.",
    ),
    "store-unavailable": (
        503,
        "Store unavailable",
        "The service's database did not answer or commit: nothing was acknowledged. Retry "
        "after Retry-After.",
    ),
    "no-worker-seen": (
        503,
        "No worker seen",
        "(/readyz) No worker has written its heartbeat lately: webhooks are accepted, but "
        "nothing folds, polls or forwards them.",
    ),
}


def type_of(kind: str) -> str:
    return BASE + kind
