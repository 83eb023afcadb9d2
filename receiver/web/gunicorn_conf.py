"""gunicorn settings for gbg-receiver, all derived from RECEIVER_* variables.

Loaded by ``gbg-receiver web`` as ``gunicorn -c python:receiver.web.gunicorn_conf``.
"""

import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from gunicorn import glogging

from receiver import metrics
from receiver.config import Settings
from receiver.log import LOGGED, configure_logging

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
logger_class = "receiver.web.gunicorn_conf.GunicornLogger"
# One JSON "http.access" event per request, on stdout with the app's logs; an accepted
# webhook's own "webhook.accepted" event stands in for it.
accesslog = "-"
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


class GunicornLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no types
    """gunicorn's own and access logs as JSON events through the app's handler."""

    _access = logging.getLogger("receiver.access")

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True  # to the root handler of configure_logging()

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled or environ.get(LOGGED):
            return
        status = str(resp.status).split(None, 1)[0]
        headers = {k.lower(): v for k, v in resp.headers}
        self._access.info(
            "http.access",
            extra={
                "remote": environ.get("REMOTE_ADDR"),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "status": int(status) if status.isdigit() else status,
                "bytes": getattr(resp, "sent", None),
                "duration_ms": round(request_time.total_seconds() * 1000, 2),
                "request_id": headers.get("x-request-id"),
            },
        )
