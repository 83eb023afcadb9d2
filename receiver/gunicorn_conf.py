"""gunicorn settings for gbg-receiver, all derived from RECEIVER_* variables.

Loaded by ``gbg-receiver web`` as ``gunicorn -c python:receiver.gunicorn_conf``.
"""

import os
import shutil
import sys
import tempfile
from typing import Any

from receiver import metrics
from receiver.config import Settings
from receiver.log import configure_logging

_settings = Settings.from_env()
configure_logging(_settings, stream=sys.stdout)  # the master's own lines, as JSON too

bind = _settings.bind
workers = _settings.web_workers or (os.cpu_count() or 1) * 2 + 1
# Threads keep a slow client from pinning a whole worker; the work per request is short.
worker_class = "gthread"
threads = _settings.web_threads
timeout = 30
graceful_timeout = 30  # SIGTERM: requests in flight finish and commit first
keepalive = 5
# The app's ProxyFix alone decides which forwarded headers to believe, for exactly
# RECEIVER_TRUSTED_PROXIES hops; gunicorn itself believes none of them.
forwarded_allow_ips = ""
logger_class = "receiver.log.GunicornLogger"
accesslog = "-"  # one JSON "http.access" event per request, on stdout with the app's logs
# gunicorn's control socket lives at one path per user; two services would fight over it.
control_socket_disable = True

# Every worker (and a poller on this host) counts into one directory that /metrics sums.
_own_metrics_dir = _settings.metrics_dir is None
_metrics_dir = _settings.metrics_dir or tempfile.mkdtemp(prefix="gbg-receiver-metrics-")
raw_env = [f"RECEIVER_METRICS_DIR={_metrics_dir}"]


def on_starting(server: Any) -> None:
    metrics.prepare(_metrics_dir)


def child_exit(server: Any, worker: Any) -> None:
    metrics.worker_exited(_metrics_dir, worker.pid)


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
