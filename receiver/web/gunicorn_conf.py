"""gunicorn settings for gbg-receiver, all derived from RECEIVER_* variables.

Loaded by ``gbg-receiver web`` as ``gunicorn -c python:receiver.web.gunicorn_conf``.
"""

import contextlib
import logging
import os
import queue
import select
import shutil
import signal
import socket
import sys
import tempfile
import weakref
from typing import Any

import sqlalchemy as sa
from gunicorn import glogging
from gunicorn.workers.gthread import ThreadWorker

from receiver import metricfiles
from receiver.config import Settings
from receiver.log import LOGGED, configure_logging
from receiver.web.inboxwriter import WriterProcess

_settings = Settings.from_env()
configure_logging(_settings, stream=sys.stdout)  # the master's own lines, as JSON too

bind = _settings.bind
workers = _settings.web_workers or (os.cpu_count() or 1) * 2 + 1
# Threads keep a slow client from pinning a whole worker; the work per request is short.
worker_class = "receiver.web.gunicorn_conf.Worker"  # gthread, stopping at once (below)
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

# The workers hand their deliveries to one writer (receiver.web.inboxwriter), unless
# the database lives in each process's memory (tests).
_db = sa.engine.make_url(_settings.database_url)
_writer: WriterProcess | None = None
if _db.get_backend_name() != "sqlite" or _db.database not in (None, "", ":memory:"):
    _writer = WriterProcess(os.path.join(tempfile.mkdtemp(prefix="gbg-receiver-"), "inbox.sock"))
    raw_env.append(f"RECEIVER_INBOX_SOCKET={_writer.path}")


def on_starting(server: Any) -> None:
    metricfiles.prepare(_metrics_dir)
    if _writer is not None:
        _writer.start()
        reap = server.reap_workers

        def reap_workers() -> None:  # gunicorn reaps every child, the writer too
            reap()
            if server.LISTENERS:  # not while stopping
                _writer.revive()

        server.reap_workers = reap_workers


def on_reload(server: Any) -> None:
    """HUP (the guide's upgrade): the workers about to be forked must import the code now
    installed, not inherit the master's copy of the modules this file and gunicorn
    loaded at start, which would mix two releases in one process. This module stays:
    it is the master's configuration."""
    for name in [n for n in sys.modules if n == "receiver" or n.startswith("receiver.")]:
        if name != __name__:
            del sys.modules[name]
    if _writer is not None:  # the writer too: the new release's code
        _writer.stop()
        _writer.start()


def post_fork(server: Any, worker: Any) -> None:
    worker.master_signals = server.SIG_QUEUE  # this process's copy: see Worker.init_signals


def child_exit(server: Any, worker: Any) -> None:
    metricfiles.worker_exited(_metrics_dir, worker.pid)


def on_exit(server: Any) -> None:
    if _writer is not None:
        _writer.stop()
        shutil.rmtree(os.path.dirname(_writer.path), ignore_errors=True)
    if _own_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


class Worker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no types
    """gthread, with two changes.

    A worker takes new connections only while it has a thread for them: while fewer
    of its connections than its threads are being served (idle kept-alive ones and
    ones deferred for want of a first byte are not). gthread takes them up to
    ``worker_connections`` (1,000), and whichever worker wakes first takes a burst of
    them: a load balancer's or a sender's kept-alive connections could all end on one
    worker, whose four threads then wait on commits while the others idle (a webhook
    waits for its commit; bench/PROFILE.md has the figures).

    A stopping worker lets go at once of the connections that never sent a request (a
    browser opens spare ones and keeps them): gthread waits for data on each for 5 s,
    deferred ones for the keepalive time, so Ctrl-C took half a minute and ended in
    SIGKILL. A connection with bytes waiting is left to be served."""

    def init_process(self) -> None:
        self._fresh: weakref.WeakSet[Any] = weakref.WeakSet()
        super().init_process()

    @property
    def worker_connections(self) -> int:
        """What gthread's loop compares its connections with before it accepts more."""
        idle = len(self.keepalived_conns) + len(self.pending_conns)
        threads: int = self.cfg.threads
        return min(self._connections_limit, idle + threads)

    @worker_connections.setter
    def worker_connections(self, limit: int) -> None:  # gthread sets the configured one
        self._connections_limit = limit

    def enqueue_req(self, conn: Any) -> None:
        if not conn.initialized:
            self._fresh.add(conn)
        super().enqueue_req(conn)

    def init_signals(self) -> None:
        """Until its own handlers are set, a booting worker answers signals with the
        master's handler that fork copied, which only queues them in this process's copy
        of the master: a stop sent then was lost, and the master waited out
        graceful_timeout before SIGKILL. Such a stop is sent again, now to be heard."""
        super().init_signals()
        early: set[int] = set()
        with contextlib.suppress(queue.Empty):
            while True:
                early.add(self.master_signals.get_nowait())
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            if sig in early:
                os.kill(os.getpid(), sig)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        for conn in list(self._fresh):
            if conn.initialized or conn.data_ready:
                continue
            with contextlib.suppress(OSError, ValueError):
                if not select.select([conn.sock], [], [], 0)[0]:  # nothing sent: let go
                    conn.sock.shutdown(socket.SHUT_RDWR)


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
