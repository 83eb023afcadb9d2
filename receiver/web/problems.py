"""Errors as RFC 9457 application/problem+json, turned into HTTP in this one place."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from receiver.errors import Problem, StoreUnavailable

log = logging.getLogger("receiver.http")

STORE_RETRY_AFTER = "5"  # seconds; long enough for a failover, short enough for GBG


def register(app: Flask) -> None:
    app.register_error_handler(Problem, _problem)
    app.register_error_handler(StoreUnavailable, _store_down)
    app.register_error_handler(HTTPException, _http_error)


def problem(
    status: int,
    title: str,
    detail: str = "",
    headers: dict[str, str] | None = None,
    **members: Any,
) -> Response:
    """An RFC 9457 application/problem+json response; ``members``: its extensions."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(members)
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    response.headers.update(headers or {})
    return response


def _problem(exc: Problem) -> Response:
    return problem(exc.status, exc.title, exc.detail, exc.headers)


def _store_down(exc: StoreUnavailable) -> Response:
    log.error("store.unavailable", extra={"error": str(exc), "path": request.path})
    return problem(
        503,
        "Store unavailable",
        "the receiver could not commit; nothing was acknowledged, retry later",
        {"Retry-After": STORE_RETRY_AFTER},
    )


def _http_error(exc: HTTPException) -> Response:
    headers = dict(exc.get_headers())
    headers.pop("Content-Type", None)
    return problem(exc.code or 500, exc.name, exc.description or "", headers)
