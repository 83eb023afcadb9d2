"""Outgoing HTTP under one total deadline, shared by the GBG client and the forwarder.

``requests`` bounds each socket operation, not a whole exchange: a peer that sends a
header or body byte now and then could hold a call for ever. ``post`` gives each
exchange one deadline, from connect to the last body byte: a watchdog shuts the socket
down the moment it passes, whatever the call is waiting for then (the connection, the
headers, the body). Redirects are never followed: a secret or a token must not travel
to wherever a 3xx points.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import threading
import time
from typing import Any

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class TransportError(Exception):
    """No complete answer: ``kind`` is timeout, connect or too_large."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class Deadline:
    """One exchange's end: at ``seconds`` from now the socket it uses is shut down."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.passed = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        """The socket the exchange uses now (a new connection, or one from the pool)."""
        with self._lock:
            self._sock = sock
            if self.passed:
                _shut(sock)

    def end(self) -> bool:
        """The exchange is over: stop watching; answer whether the deadline passed."""
        self._timer.cancel()
        with self._lock:
            self._sock = None
            return self.passed

    def _cut(self) -> None:
        with self._lock:
            self.passed = True
            _shut(self._sock)


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)  # a blocked read or write returns at once


_exchange = threading.local()  # the Deadline of this thread's exchange under way, if any


class _Watched:
    """Connections that hand their socket to the current exchange's deadline."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        _watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a kept-alive connection from the pool
        super().request(*args, **kwargs)  # type: ignore[misc]


def _watch(sock: socket.socket | None) -> None:
    deadline: Deadline | None = getattr(_exchange, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def session(pool: int) -> requests.Session:
    """A session whose connections keep ``post``'s deadline, ``pool`` of them kept alive
    per host."""
    session = requests.Session()
    adapter = _Adapter(pool_maxsize=pool)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def post(
    session: requests.Session,
    url: str,
    what: str,
    *,
    timeout: tuple[float, float],
    max_bytes: int,
    **request: Any,
) -> tuple[requests.Response, bytes]:
    """POST and read the whole answer within connect plus read timeout, in all.

    The deadline holds only on a session made by ``session()``; elsewhere each socket
    operation is bounded, not the whole.
    """
    deadline = Deadline(sum(timeout))
    _exchange.deadline = deadline
    response: requests.Response | None = None
    try:
        response = session.post(url, timeout=timeout, allow_redirects=False, stream=True, **request)
        chunks, size = [], 0
        while chunk := response.raw.read1(65536, decode_content=True):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise TransportError(f"{what}: answer too large", "too_large")
    except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
        _close(response)
        raise TransportError(f"{what}: timed out", "timeout") from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        _close(response)
        if deadline.end():
            raise TransportError(f"{what}: not complete in time", "timeout") from exc
        raise TransportError(f"{what}: {type(exc).__name__}", "connect") from exc
    except BaseException:
        _close(response)
        raise
    finally:
        _exchange.deadline = None
        passed = deadline.end()
    if passed:  # the socket was shut: what was read may be cut short
        response.close()
        raise TransportError(f"{what}: answer not complete in time", "timeout")
    response.raw.release_conn()  # read to the end: back to the pool, kept alive
    return response, b"".join(chunks)


def _close(response: requests.Response | None) -> None:
    if response is not None:
        response.close()  # cut off mid-answer: this connection is not reused


def retry_after(headers: Any, cap: float, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), None if absent.

    Bounded: anything longer than ``cap``, infinite or unreadable counts as ``cap``.
    """
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return cap
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return cap
    return min(max(0.0, seconds), cap)
