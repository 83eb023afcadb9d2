"""Health, readiness, metrics and the OpenAPI document: no token needed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, redirect
from werkzeug.exceptions import NotFound
from werkzeug.wrappers import Response as WerkzeugResponse

from receiver import liveness, problemtypes
from receiver.store.engine import cause
from receiver.web import context, problems

log = logging.getLogger("receiver.health")
health = Blueprint("health", __name__)


@health.get("/")
def home() -> WerkzeugResponse:
    """People who open the service's address find the dashboard."""
    return redirect("/dashboard/", 302)


@health.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/openapi.json")
def openapi() -> Response:
    document = (Path(__file__).parent / "openapi.json").read_bytes()
    return Response(document, content_type="application/json")


@health.get("/problems")
def problem_types() -> dict[str, Any]:
    """Every kind of problem the service answers (the ``type`` of its errors)."""
    return {"problems": [_problem_type(kind) for kind in problemtypes.KINDS]}


@health.get("/problems/<kind>")
def problem_type(kind: str) -> dict[str, Any]:
    """What one problem ``type`` means, and what a client should do about it."""
    if kind not in problemtypes.KINDS:
        raise NotFound("no such problem type")
    return _problem_type(kind)


def _problem_type(kind: str) -> dict[str, Any]:
    status, title, description = problemtypes.KINDS[kind]
    return {
        "type": problemtypes.type_of(kind),
        "title": title,
        "status": status,
        "description": description,
    }


@health.get("/metrics")
def metrics() -> Response:
    services = context.services()
    text, content_type = services.metrics.render(services.store, services.clock)
    return Response(text, content_type=content_type)


@health.get("/readyz")
def readyz() -> Response | tuple[dict[str, Any], int]:
    """Ready: the store answers, and a worker was seen lately (or none ever ran)."""
    services = context.services()
    try:
        seen = liveness.read(services)
    except Exception as exc:  # readiness answers for any failure of the store, whatever its kind
        log.warning("readyz.store_down", extra={"error": cause(exc)})
        detail = "the store did not answer (its cause is logged as readyz.store_down)"
        retry = {"Retry-After": problems.STORE_RETRY_AFTER}
        return problems.problem("store-unavailable", detail, retry)
    if seen.problem:
        return problems.problem("no-worker-seen", seen.problem, workers=seen.report())
    skew = round(liveness.skew_of(services), 3)
    return {"status": "ready", "clockSkewSeconds": skew, "workers": seen.report()}, 200
