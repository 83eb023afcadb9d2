"""The host's one inbox writer: every web worker's deliveries, one commit.

gunicorn's master starts it (``WriterProcess``, from ``receiver.web.gunicorn_conf``)
before its workers, on a unix socket in a directory only this user can enter, and
starts it again if it exits. It reads whatever the workers sent, commits all of it in
one statement, and answers each delivery after that commit (``receiver.store.inboxlink``
has the frames, and what a worker does when the writer cannot help: it writes itself).
So one commit serves every worker's webhooks of the moment: on SQLite one fsync, no two
web processes queueing for its write lock and no request thread holding it; on
PostgreSQL one statement and one round trip instead of one per process.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from receiver import metrics
from receiver.config import Settings
from receiver.errors import StoreUnavailable
from receiver.log import configure_logging
from receiver.metrics import Metrics
from receiver.stopsignals import StopSignals
from receiver.store import Database, Delivery, Store
from receiver.store.inboxlink import COMMITTED, NOT_COMMITTED, unframe

log = logging.getLogger("receiver.inbox_writer")

# Seconds: on SQLite, while commits come less than BUSY apart, the writer waits up to
# LINGER for more deliveries before the next (a webhook's 202 comes that much later at
# most). PostgreSQL groups concurrent commits itself; there it measured no gain.
LINGER = 0.001
BUSY = 0.005
RESTART_AFTER = 5.0  # seconds a restarted writer must run to be restarted once more


class InboxWriter:
    """Reads frames from every connected worker and commits them together."""

    def __init__(
        self,
        store: Store,
        listener: socket.socket,
        counts: Metrics,
        *,
        wake: Any = None,
        linger: float = 0.0,
        busy: float = BUSY,
    ) -> None:
        """``wake``, if given, is anything with a ``fileno()`` that ends ``step``'s wait
        when it becomes readable, unread (the process's StopSignals). ``linger`` and
        ``busy``: see ``step``."""
        self.store = store
        self.linger, self.busy = linger, busy
        self.counts = counts
        self.listener = listener
        listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        self._wake = wake
        if wake is not None:
            self._selector.register(wake, selectors.EVENT_READ)
        self._buffers: dict[socket.socket, bytearray] = {}
        self._committed = float("-inf")  # when the last commit ended (monotonic)

    def step(self, timeout: float | None) -> int:
        """Wait up to ``timeout`` for frames; commit what came and answer it. Returns
        how many deliveries were answered.

        While webhooks come fast (the last commit ended under ``busy`` seconds before
        the first frame came), it waits up to ``linger`` seconds for more before it
        commits, unless every connected line has already sent: the CPU of a commit (on
        SQLite an fsync, the statement, the answers) is then shared by more webhooks
        (bench/PROFILE.md). At a trickle no webhook waits for others."""
        batch, woken = self._gather(timeout)
        if batch and self.linger and time.monotonic() - self._committed < self.busy:
            deadline = time.monotonic() + self.linger
            while not woken and len({s for s, _ in batch}) < len(self._buffers):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                more, woken = self._gather(left)
                batch += more
        if batch:
            answer = self._commit([d for _, d in batch])
            self._committed = time.monotonic()
            for sock, _ in batch:
                self._answer(sock, answer)
        return len(batch)

    def _gather(self, timeout: float | None) -> tuple[list[tuple[socket.socket, Delivery]], bool]:
        """The frames that came within ``timeout``, and whether the wake socket rang."""
        batch: list[tuple[socket.socket, Delivery]] = []
        woken = False
        for key, _ in self._selector.select(timeout):
            sock: Any = key.fileobj
            if sock is self.listener:
                self._accept()
            elif sock is self._wake:
                woken = True
            else:
                batch += [(sock, d) for d in self._read(sock)]
        return batch, woken

    def close(self) -> None:
        for sock in list(self._buffers):
            self._drop(sock)
        self._selector.close()
        self.listener.close()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self._buffers[sock] = bytearray()
        self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> list[Delivery]:
        buffer = self._buffers[sock]
        try:
            data = sock.recv(1 << 16)
            if data:
                buffer += data
                return unframe(buffer)
        except BlockingIOError:
            return []
        except (OSError, ValueError, TypeError) as exc:  # not one of our workers' frames
            log.warning("inbox_writer.bad_frame", extra={"cause": type(exc).__name__})
        self._drop(sock)  # closed by the worker (or cut here): its thread has gone
        return []

    def _commit(self, deliveries: list[Delivery]) -> bytes:
        try:
            self.store.append_deliveries(deliveries)
        except Exception as exc:  # each sender then writes its own delivery, as before
            cause = str(exc) if isinstance(exc, StoreUnavailable) else type(exc).__name__
            extra = {"cause": cause, "count": len(deliveries)}
            log.error("inbox_writer.not_committed", extra=extra)
            self.counts.written.labels("not_committed").inc(len(deliveries))
            return NOT_COMMITTED
        self.counts.writer_commits.inc()
        self.counts.written.labels("committed").inc(len(deliveries))
        return COMMITTED

    def _answer(self, sock: socket.socket, answer: bytes) -> None:
        if sock not in self._buffers:
            return
        try:
            sock.send(answer)
        except OSError:  # gone, or not reading its answers: it writes for itself
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._buffers.pop(sock, None)
        self._selector.unregister(sock)
        sock.close()


class WriterProcess:
    """The master's handle on its writer: started before the workers, started again
    when it exits (but not again if the restarted one exits within RESTART_AFTER
    seconds: a writer that cannot start is not started in a loop), stopped last."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._restarted = False
        self._stopped = False

    def start(self, *, wait: float = 10.0) -> None:
        """Start the writer and wait (up to ``wait`` s) for its socket: workers that
        find no writer write themselves, so a slow start costs speed, not webhooks."""
        self._stopped = False
        Path(self.path).unlink(missing_ok=True)
        env = dict(os.environ, RECEIVER_INBOX_SOCKET=self.path)
        self._proc = subprocess.Popen([sys.executable, "-m", __name__], env=env)  # noqa: S603
        self._started = time.monotonic()
        deadline = self._started + wait
        while not os.path.exists(self.path) and self.running() and time.monotonic() < deadline:
            time.sleep(0.02)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def revive(self) -> None:
        """After the master reaped children: start the writer again if it has exited."""
        if self._stopped or self._proc is None or self.running():
            return
        ran = time.monotonic() - self._started
        again = not (self._restarted and ran < RESTART_AFTER)
        log.error("inbox_writer.exited", extra={"ran_s": round(ran, 1), "restarted": again})
        self._proc = None
        if again:
            self._restarted = True
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped = True
        if self._proc is None:
            return
        if self.running():
            self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        Path(self.path).unlink(missing_ok=True)


def main() -> None:
    """``python -m receiver.web.inboxwriter``: serve RECEIVER_INBOX_SOCKET until SIGTERM
    or SIGINT, or until the master that started it is gone."""
    settings = Settings.from_env()
    configure_logging(settings, stream=sys.stdout)
    path = settings.inbox_socket
    if not path:
        raise SystemExit("RECEIVER_INBOX_SOCKET: not set (gunicorn's master sets it)")
    url, pooled = settings.database_url, settings.database_pooled
    with StopSignals() as stops:
        store = Store(Database.from_url(url, connections=1, pooled=pooled, hold=True))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(256)
        linger = 0.0 if store.db.is_postgres else LINGER
        counts = metrics.start(settings.metrics_dir)
        writer = InboxWriter(store, listener, counts, wake=stops, linger=linger)
        master = os.getppid()
        log.info("inbox_writer.started", extra={"socket": path})
        while not stops.wait(0) and os.getppid() == master:
            writer.step(1.0)
        writer.close()
        store.close()
        log.info("inbox_writer.stopped", extra={"socket": path})


if __name__ == "__main__":
    main()
