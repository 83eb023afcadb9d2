"""Prometheus metrics that stay correct across gunicorn workers and poller processes.

Counters and histograms are kept by every process in prometheus-client's multiprocess
files (RECEIVER_METRICS_DIR, shared by the web workers and the poller on one host) and
summed at scrape time. Gauges about the instances are read from the store when
scraped, so they are right whatever the number and placement of processes; when the
store does not answer, ``gbg_receiver_store_up`` says so and the counters still come.

prometheus-client picks its storage when first imported, so ``start()`` sets
PROMETHEUS_MULTIPROC_DIR and only then imports it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from contextlib import nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from receiver import metricfiles
from receiver.errors import StoreUnavailable

if TYPE_CHECKING:
    from receiver.store import Store

_FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_FORWARD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0, 3600.0, 36000.0)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
log = logging.getLogger("receiver.metrics")


class Metrics:
    """The process's counters and histograms."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        # exchange.observe's series of each kind of answer: (method, endpoint, status).
        self.answers: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        from prometheus_client import Counter, Histogram

        self.webhooks = Counter(
            "gbg_receiver_webhooks", "Webhook deliveries by outcome", ["outcome"]
        )
        self.folded = Counter(
            "gbg_receiver_inbox_folded", "Webhook deliveries folded from the inbox into instances"
        )
        self.written = Counter(
            "gbg_receiver_inbox_writer_deliveries",
            "Deliveries the inbox writer committed, or could not (the worker then did)",
            ["outcome"],
        )
        self.writer_commits = Counter(
            "gbg_receiver_inbox_writer_commits", "Commits of the web's inbox writer"
        )
        self.fetches = Counter(
            "gbg_receiver_gbg_fetches", "GBG state fetches by outcome", ["outcome"]
        )
        self.fetch_seconds = Histogram(
            "gbg_receiver_gbg_fetch_seconds", "GBG state fetch latency", buckets=_FETCH_BUCKETS
        )
        self.forwards = Counter(
            "gbg_receiver_forward_attempts",
            "Messages to the application: attempts by outcome (delivered, failed for good, "
            "or the error of an attempt to be retried)",
            ["outcome"],
        )
        self.forward_seconds = Histogram(
            "gbg_receiver_forward_latency_seconds",
            "From a status change to its message being delivered to the application",
            buckets=_FORWARD_BUCKETS,
        )
        self.request_seconds = Histogram(
            "gbg_receiver_http_request_seconds",
            "HTTP request latency by endpoint and status",
            ["method", "endpoint", "status"],
            buckets=_HTTP_BUCKETS,
        )

    def render(self, store: Store, clock: Callable[[], float]) -> tuple[bytes, str]:
        """The exposition text: every process's counters plus the store's gauges."""
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
        from prometheus_client.core import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry: Any = REGISTRY
        if self.directory:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        summing = metricfiles.reading(self.directory) if self.directory else nullcontext()
        with summing:
            counts = generate_latest(registry)
        text = counts + generate_latest(_store_registry(store, clock))
        return text, CONTENT_TYPE_LATEST

    def serve(self, store: Store, clock: Callable[[], float], bind: str) -> ThreadingHTTPServer:
        """Serve ``GET /metrics`` on ``bind`` (HOST:PORT) from a thread: a worker's own
        scrape, for a host that runs no web. Shut it down with ``shutdown()``."""
        render = self.render

        class Scrape(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                text, content_type = render(store, clock)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass  # a scrape every 15 s is not worth a line

        host, _, port = bind.rpartition(":")
        server = ThreadingHTTPServer((host.strip("[]"), int(port)), Scrape)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server


_metrics: Metrics | None = None


def start(directory: str | None) -> Metrics:
    """The process's metrics, created once; multiprocess files when a directory is given."""
    global _metrics
    if _metrics is None:
        if directory:
            metricfiles.prepare(directory)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
            from prometheus_client import values

            # Files named by host and pid: containers sharing the directory (web and
            # pollers in compose) each count in their own, though their pids repeat.
            values.ValueClass = values.MultiProcessValue(metricfiles.process_id)  # type: ignore[no-untyped-call]
        _metrics = Metrics(directory)
    return _metrics


# Gauges read from the store at scrape time: name, help, key of the store's snapshot.
_GAUGES = (
    (
        "gbg_receiver_oldest_unfinished_age_seconds",
        "Age of the oldest instance still in progress",
        "oldest_unfinished_age",
    ),
    (
        "gbg_receiver_poll_lag_seconds",
        "How long the most overdue instance has been waiting for its fetch",
        "poll_lag",
    ),
    (
        "gbg_receiver_given_up_instances",
        "Unfinished instances whose polling gave up (gbg-receiver resume --given-up)",
        "given_up",
    ),
    (
        "gbg_receiver_gbg_failure_streak",
        "GBG-wide failures in a row (no connection, 5xx, refused token), all workers",
        "gbg_failures",
    ),
    (
        "gbg_receiver_gbg_paused_seconds",
        "How much longer every fetch waits because GBG is failing (0: not paused)",
        "gbg_paused_for",
    ),
    (
        "gbg_receiver_inbox_depth",
        "Webhook deliveries acknowledged and not yet folded into their instances",
        "inbox_depth",
    ),
    (
        "gbg_receiver_outbox_depth",
        "Messages to the application written and not yet delivered (pending)",
        "outbox_pending",
    ),
    (
        "gbg_receiver_outbox_failed",
        "Messages to the application that used up their attempts (replayable)",
        "outbox_failed",
    ),
    (
        "gbg_receiver_outbox_oldest_age_seconds",
        "Age of the oldest message to the application still pending",
        "outbox_oldest_age",
    ),
    (
        "gbg_receiver_inbox_oldest_age_seconds",
        "Age of the oldest delivery waiting in the inbox",
        "inbox_oldest_age",
    ),
    (
        "gbg_receiver_worker_heartbeat_age_seconds",
        "Since the newest heartbeat of any worker, on any host (+Inf: no worker ever ran)",
        "worker_seen_age",
    ),
    (
        "gbg_receiver_inbox_quarantined",
        "Webhook deliveries set aside because they could not be folded (see the API)",
        "inbox_quarantined",
    ),
)


def _store_registry(store: Store, clock: Callable[[], float]) -> Any:
    from prometheus_client.core import CollectorRegistry, GaugeMetricFamily

    class StoreCollector:
        def collect(self) -> Any:
            # The store down is a figure too: the processes' own counters (503s among
            # them) are still served, so the scrape itself does not fail with it.
            try:  # the database's clock, unmeasured while the store is down, counts as down
                facts = store.snapshot(clock())
            except StoreUnavailable as exc:
                log.warning("metrics.store_unavailable", extra={"error": str(exc)})
                facts = None
            yield GaugeMetricFamily(
                "gbg_receiver_store_up",
                "1 when the store answered this scrape, 0 when it did not (the gauges "
                "read from it are then left out)",
                value=int(facts is not None),
            )
            if facts is None:
                return
            by_status = GaugeMetricFamily(
                "gbg_receiver_instances", "Instances by status", labels=["status"]
            )
            for status, count in sorted(facts["by_status"].items()):
                by_status.add_metric([status], count)
            yield by_status
            resolved = GaugeMetricFamily(
                "gbg_receiver_resolved_instances",
                "Instances that reached completed/failed, by how it was found "
                "(a rising share of 'poll' means webhooks are being lost)",
                labels=["source"],
            )
            for source, count in sorted(facts["resolved_by"].items()):
                resolved.add_metric([source], count)
            yield resolved
            for name, doc, key in _GAUGES:
                yield GaugeMetricFamily(name, doc, value=facts[key])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector())
    return registry
