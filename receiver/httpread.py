"""Outgoing HTTP under one total deadline, shared by the GBG client and the forwarder.

``requests`` bounds each socket operation, not a whole answer: a server that sends a
byte now and then could hold a call for ever. ``post`` reads the answer one socket read
at a time and stops at the deadline. Redirects are never followed: a secret or a token
must not travel to wherever a 3xx points.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import requests
import urllib3


class TransportError(Exception):
    """No complete answer: ``kind`` is timeout, connect or too_large."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def post(
    session: requests.Session,
    url: str,
    what: str,
    *,
    timeout: tuple[float, float],
    max_bytes: int,
    **request: Any,
) -> tuple[requests.Response, bytes]:
    """POST and read the whole answer within connect plus read timeout, in all."""
    deadline = time.monotonic() + sum(timeout)
    try:
        response = session.post(url, timeout=timeout, allow_redirects=False, stream=True, **request)
        chunks, size = [], 0
        try:
            while chunk := response.raw.read1(65536, decode_content=True):
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise TransportError(f"{what}: answer not complete in time", "timeout")
                if size > max_bytes:
                    raise TransportError(f"{what}: answer too large", "too_large")
        except BaseException:
            response.close()  # cut off mid-answer: this connection is not reused
            raise
        response.raw.release_conn()  # read to the end: back to the pool, kept alive
    except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
        raise TransportError(f"{what}: timed out", "timeout") from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise TransportError(f"{what}: {type(exc).__name__}", "connect") from exc
    return response, b"".join(chunks)


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
