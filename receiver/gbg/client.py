"""GbgClient: GBG GO's token, journey start and state fetch (v1 and v2).

Takes an injected ``requests.Session``; every call has explicit connect and read
timeouts; failures are raised as this project's own errors (GbgUnavailable,
GbgAuthError, GbgRejected). One client serves every thread of a process and shares one
cached token among them, refreshed shortly before it expires and once on a 401.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from receiver import httpread, strictjson
from receiver.domain.model import INSTANCE_ID, GbgState
from receiver.errors import GbgAuthError, GbgRejected, GbgUnavailable
from receiver.gbg.states import parse_state

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.05  # just over a TCP retransmission window
MAX_ANSWER = 8 * 1024 * 1024  # bytes: a state document is a few KiB
MAX_RETRY_AFTER = 60.0  # seconds: the longest pause one 429 can impose on every poller
TIMEOUT = (CONNECT_TIMEOUT, 10.0)  # connect, read: a state fetch is small; slow is an error
_PATHS = {
    "v1": {"start": "/captain/api/journey/start", "fetch": "/captain/api/journey/state/fetch"},
    "v2": {"start": "/v2/captain/journey/start", "fetch": "/v2/captain/journey/state/fetch"},
}


class GbgClient:
    """A thread-safe GBG GO client for one set of credentials."""

    def __init__(
        self,
        *,
        base_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        username: str | None = None,
        password: str | None = None,
        api_version: str = "v2",
        store_pii: bool = False,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout: tuple[float, float] = TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self.api_version = api_version
        self.store_pii = store_pii
        self.session = session or httpread.session(4)
        self._clock = clock
        self.timeout = timeout
        self._grant = {"client_id": client_id, "client_secret": client_secret}
        if username is not None:
            self._grant |= {"grant_type": "password", "username": username}
            self._grant["password"] = password or ""
        else:
            self._grant |= {"grant_type": "client_credentials", "scope": "gbg.token"}
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self.token_requests = 0

    # -- token ----------------------------------------------------------------------------

    def token(self) -> str:
        """The cached access token, fetched when missing or about to expire.

        One caller at a time asks the token endpoint; the others wait for its answer, but
        none longer than one exchange's deadline: then it is the token endpoint's fault.
        """
        if not self._lock.acquire(timeout=sum(self.timeout)):
            raise GbgUnavailable("token endpoint: no token in time", kind="token")
        try:
            if self._token is None or self._clock() >= self._token_expires:
                self._token, lifetime = self._request_token()
                # Refresh a little early so no call goes out with a token about to lapse.
                self._token_expires = self._clock() + lifetime - min(60.0, lifetime / 10)
            return self._token
        finally:
            self._lock.release()

    def _invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:  # another thread may have refreshed it already
                self._token = None

    def _request_token(self) -> tuple[str, float]:
        self.token_requests += 1
        try:
            response, content = self._send(self.token_url, "token endpoint", data=self._grant)
            if response.status_code in (400, 401, 403):
                status = response.status_code
                raise GbgAuthError(f"token endpoint refused the credentials ({status})")
            body = _answer(response, content, "token endpoint")
        except GbgUnavailable as exc:  # whatever went wrong, it stops every fetch alike
            raise GbgUnavailable(str(exc), kind="token", retry_after=exc.retry_after) from None
        token, lifetime = body.get("access_token"), body.get("expires_in", 3600)
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise GbgUnavailable("token endpoint answered without a token", kind="token")
        return token, float(lifetime)

    # -- calls ------------------------------------------------------------------------------

    def fetch_state(self, instance_id: str) -> GbgState:
        """The instance's state from the configured API version, parsed."""
        body = self._post(_PATHS[self.api_version]["fetch"], {"instanceId": instance_id})
        returned_id = body.get("instanceId")
        if returned_id is not None and returned_id != instance_id:
            raise GbgUnavailable("state fetch answered for another instance", kind="garbage")
        return parse_state(body, store_pii=self.store_pii)

    def start_journey(
        self, resource_id: str, context: dict[str, Any] | None = None
    ) -> tuple[str, str | None]:
        """Start a journey; answer the new instance id and, from v2, the URL the person
        opens (None where GBG gives none)."""
        body = self._post(
            _PATHS[self.api_version]["start"], {"resourceId": resource_id, "context": context or {}}
        )
        instance_id, url = body.get("instanceId"), body.get("instanceUrl")
        if not isinstance(instance_id, str) or not INSTANCE_ID.fullmatch(instance_id):
            raise GbgUnavailable("journey start answered without an instanceId", kind="garbage")
        link = isinstance(url, str) and url.startswith(("https://", "http://"))
        return instance_id, url if link else None

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        token, (response, content) = self._post_once(path, payload)
        if response.status_code == 401:  # expired or revoked early: one fresh token, once
            self._invalidate(token)
            _, (response, content) = self._post_once(path, payload)
        return _answer(response, content, path)

    def _post_once(
        self, path: str, payload: dict[str, Any]
    ) -> tuple[str, tuple[requests.Response, bytes]]:
        token = self.token()
        headers = {"Authorization": f"Bearer {token}"}
        return token, self._send(self.base_url + path, path, json=payload, headers=headers)

    def _send(self, url: str, what: str, **request: Any) -> tuple[requests.Response, bytes]:
        try:
            return httpread.post(
                self.session, url, what, timeout=self.timeout, max_bytes=MAX_ANSWER, **request
            )
        except httpread.TransportError as exc:
            kind = "garbage" if exc.kind == "too_large" else exc.kind
            raise GbgUnavailable(str(exc), kind=kind) from exc


def _answer(response: requests.Response, content: bytes, path: str) -> dict[str, Any]:
    status = response.status_code
    if status == 429:
        raise GbgUnavailable(
            f"{path}: 429", kind="http_429", retry_after=retry_after(response.headers)
        )
    if status >= 500 or 300 <= status < 400:  # a redirect is not followed: an error
        raise GbgUnavailable(f"{path}: {status}", kind=f"http_{status}")
    if status == 401:
        raise GbgAuthError(f"{path}: 401 with a fresh token")
    if status >= 400:
        raise GbgRejected(f"{path}: {status}", status=status)
    try:
        body = strictjson.loads(content)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise GbgUnavailable(f"{path}: the answer is not a JSON object", kind="garbage")
    return body


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds GBG asks us to wait, at most MAX_RETRY_AFTER: one answer from GBG must
    not stop polling for long."""
    return httpread.retry_after(headers, MAX_RETRY_AFTER, now)
