"""GBG's failures, played by the simulator: the kinds, the answer each one gives, and
GBG's error answer itself."""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import Response, jsonify

FAULT_KINDS = ("500", "502", "503", "429", "timeout", "garbage", "401", "404")


@dataclass
class Fault:
    kind: str
    count: int = 1
    on: str = "fetch"  # fetch | token | start
    instance_id: str | None = None
    retry_after: float | str | None = None  # a string is sent as is ("inf", an HTTP date)
    delay: float = 15.0  # for "timeout": longer than any sane read timeout


def fault_response(fault: Fault) -> Response | None:
    """GBG failing as ``fault`` says; None for a timeout (after sleeping past it)."""
    kind = fault.kind
    if kind == "timeout":
        time.sleep(fault.delay)
        return None
    if kind == "garbage":
        return Response(
            "<html><body>Service temporarily unavailable</body></html>",
            200,
            mimetype="text/html",
        )
    response = error_response(int(kind), f"simulated {kind}")
    if kind == "429":
        wait = fault.retry_after or 2
        response.headers["Retry-After"] = wait if isinstance(wait, str) else str(int(wait))
    return response


def error_response(status: int, message: str) -> Response:
    """GBG's error answer: ``{"error": message}`` with ``status``."""
    response = jsonify({"error": message})
    response.status_code = status
    return response
