"""Errors as RFC 9457 application/problem+json, turned into HTTP in this one place.

``render`` and its kin answer (status, headers, body) without Flask, for the webhook
endpoint that runs in front of it; ``register`` hands the same answers to Flask's views.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from receiver import problemtypes
from receiver.errors import Problem, StoreUnavailable

log = logging.getLogger("receiver.http")

STORE_RETRY_AFTER = "5"  # seconds; long enough for a failover, short enough for GBG

Answer = tuple[int, dict[str, str], bytes]


def register(app: Flask) -> None:
    app.register_error_handler(Problem, lambda exc: _response(of_problem(exc)))
    app.register_error_handler(
        StoreUnavailable, lambda exc: _response(store_down(exc, request.path))
    )
    app.register_error_handler(HTTPException, lambda exc: _response(http_error(exc)))


def problem(
    kind: str, detail: str = "", headers: dict[str, str] | None = None, **members: Any
) -> Response:
    """An RFC 9457 application/problem+json response of one of the kinds in
    ``receiver.problemtypes``; ``members``: its extensions (``field``, ``workers``)."""
    return _response(render(kind, detail, headers, **members))


def render(
    kind: str, detail: str = "", headers: dict[str, str] | None = None, **members: Any
) -> Answer:
    status, title, _ = problemtypes.KINDS[kind]
    return _render(status, problemtypes.type_of(kind), title, detail, headers, members)


def of_problem(exc: Problem) -> Answer:
    return render(exc.kind, exc.detail, exc.headers, field=exc.field)


def store_down(exc: StoreUnavailable, path: str) -> Answer:
    log.error("store.unavailable", extra={"error": str(exc), "path": path})
    return render(
        "store-unavailable",
        "the receiver could not commit; nothing was acknowledged, retry later",
        {"Retry-After": STORE_RETRY_AFTER},
    )


def http_error(exc: HTTPException) -> Answer:
    """HTTP's own errors (no such route, a method not allowed): nothing more to say than
    the status, so ``about:blank`` as RFC 9457 has it."""
    headers = dict(exc.get_headers())
    headers.pop("Content-Type", None)
    return _render(exc.code or 500, "about:blank", exc.name, exc.description or "", headers, {})


def _render(
    status: int,
    type_: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None,
    members: dict[str, Any],
) -> Answer:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in members.items() if v is not None})
    text = json.dumps(body, separators=(",", ":")) + "\n"
    return status, {"Content-Type": "application/problem+json", **(headers or {})}, text.encode()


def _response(answer: Answer) -> Response:
    status, headers, body = answer
    return Response(body, status, headers)
