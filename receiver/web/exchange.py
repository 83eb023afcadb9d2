"""What every answer does, through Flask or in front of it: its request id and its
metrics."""

from __future__ import annotations

import uuid

from receiver.metrics import Metrics

WEBHOOK_PATH = "/webhooks/gbg"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
WEBHOOK_OUTCOMES = {
    "202": "accepted",
    "400": "malformed",
    "401": "unauthorized",
    "413": "too_large",
    "422": "unprocessable",
    "503": "store_unavailable",
}


def request_id_for(presented: str) -> str:
    """The caller's X-Request-ID when it is 1-64 printable characters, else a new one."""
    return presented if 0 < len(presented) <= 64 and presented.isprintable() else uuid.uuid4().hex


def observe(metrics: Metrics, method: str, endpoint: str, status: int, seconds: float) -> None:
    """One answer in the metrics: its latency, and a webhook's outcome."""
    bounded = method if method in METHODS else "other"  # a made-up method adds no series
    key = (bounded, endpoint, status)
    series = metrics.answers.get(key)
    if series is None:  # each kind of answer looks its series up once per process
        label = str(status)
        counted = None
        if endpoint == WEBHOOK_PATH and method == "POST":
            counted = metrics.webhooks.labels(WEBHOOK_OUTCOMES.get(label, label))
        series = metrics.answers[key] = (
            metrics.request_seconds.labels(bounded, endpoint, label),
            counted,
        )
    latency, outcome = series
    latency.observe(seconds)
    if outcome is not None:
        outcome.inc()
