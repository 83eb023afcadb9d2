"""Health, readiness, metrics and the OpenAPI document: no token needed."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, Response, redirect
from werkzeug.wrappers import Response as WerkzeugResponse

from receiver.web import context

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


@health.get("/metrics")
def metrics() -> Response:
    services = context.services()
    text, content_type = services.metrics.render(services.store, services.clock())
    return Response(text, content_type=content_type)


@health.get("/readyz")
def readyz() -> tuple[dict[str, str], int]:
    try:
        context.services().store.ping()
    except Exception:  # readiness answers for any failure of the store, whatever its kind
        log.warning("readyz.store_down")
        return {"status": "store unavailable"}, 503
    return {"status": "ready"}, 200
