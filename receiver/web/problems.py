"""Errors as RFC 9457 application/problem+json, turned into HTTP in this one place."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from receiver import problemtypes
from receiver.errors import Problem, StoreUnavailable

log = logging.getLogger("receiver.http")

STORE_RETRY_AFTER = "5"  # seconds; long enough for a failover, short enough for GBG


def register(app: Flask) -> None:
    app.register_error_handler(Problem, _problem)
    app.register_error_handler(StoreUnavailable, _store_down)
    app.register_error_handler(HTTPException, _http_error)


def problem(
    kind: str, detail: str = "", headers: dict[str, str] | None = None, **members: Any
) -> Response:
    """An RFC 9457 application/problem+json response of one of the kinds in
    ``receiver.problemtypes``; ``members``: its extensions (``field``, ``workers``)."""
    status, title, _ = problemtypes.KINDS[kind]
    return _body(status, problemtypes.type_of(kind), title, detail, headers, members)


def _body(
    status: int,
    type_: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None,
    members: dict[str, Any],
) -> Response:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in members.items() if v is not None})
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    return response


def _problem(exc: Problem) -> Response:
    return problem(exc.kind, exc.detail, exc.headers, field=exc.field)


def _store_down(exc: StoreUnavailable) -> Response:
    log.error("store.unavailable", extra={"error": str(exc), "path": request.path})
    return problem(
        "store-unavailable",
        "the receiver could not commit; nothing was acknowledged, retry later",
        {"Retry-After": STORE_RETRY_AFTER},
    )


def _http_error(exc: HTTPException) -> Response:
    """HTTP's own errors (no such route, a method not allowed): nothing more to say than
    the status, so ``about:blank`` as RFC 9457 has it."""
    headers = dict(exc.get_headers())
    headers.pop("Content-Type", None)
    return _body(exc.code or 500, "about:blank", exc.name, exc.description or "", headers, {})
