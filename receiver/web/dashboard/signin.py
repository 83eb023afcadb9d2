"""Signing in to the dashboard: an API token, once, for a session cookie.

The cookie (``__Secure-``, HttpOnly, SameSite=Strict, path /dashboard) holds no token:
only an HMAC of the one used, which must still match a configured token on every
request, so removing a token from RECEIVER_API_TOKENS ends its sessions. Each session
has an id; signing out revokes it in the store, so a copy of the cookie taken before
opens nothing after, on any host. The signing key
is derived from the tokens themselves, so every gunicorn worker and every restart agrees
on it without another setting. Every form carries a CSRF token bound to the session.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta

from flask import Flask, Request, abort, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

log = logging.getLogger("receiver.dashboard")

PATH = "/dashboard"
LIFETIME = timedelta(hours=8)
_KEY_LABEL = b"gbg-receiver dashboard sessions\0"


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed cookie sessions, opened only under /dashboard: the webhook and the
    API never read or write a cookie."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path != PATH and not request.path.startswith(PATH + "/"):
            return None  # Flask's null session: never saved
        return super().open_session(app, request)


def configure(app: Flask, tokens: Sequence[str]) -> None:
    app.secret_key = signing_key(tokens)
    app.session_interface = DashboardSessions()
    app.config.update(
        SESSION_COOKIE_NAME="__Secure-gbgr-dashboard",
        SESSION_COOKIE_PATH=PATH,
        SESSION_COOKIE_SECURE=True,  # browsers also allow it on http://127.0.0.1 and localhost
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=LIFETIME,
    )


def signing_key(tokens: Sequence[str]) -> bytes:
    if not tokens:  # the dashboard is closed like the API: nobody can sign in
        return secrets.token_bytes(32)
    joined = b"\0".join(sorted(t.encode() for t in tokens))
    return hashlib.sha256(_KEY_LABEL + joined).digest()


def _mark(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def sign_in(presented: str, tokens: Sequence[str], key: bytes, now: float) -> bool:
    """Start a session if ``presented`` is one of the tokens (compared in constant time,
    against every token)."""
    matched = None
    for token in tokens:
        if hmac.compare_digest(presented.encode(), token.encode()):
            matched = token
    if matched is None:
        log.warning("dashboard.signin_refused", extra={"peer": request.remote_addr})
        return False
    session.clear()
    session.permanent = True
    session["who"] = _mark(key, matched)
    session["since"] = now
    session["sid"] = secrets.token_urlsafe(24)  # a fresh CSRF token is made on first use
    log.info("dashboard.signed_in", extra={"peer": request.remote_addr})
    return True


def sign_out(revoke: Callable[[str, float], None]) -> None:
    """End the session: ``revoke(sid, until)`` it for every host, then clear the cookie."""
    sid, since = session.get("sid"), session.get("since")
    if isinstance(sid, str) and isinstance(since, int | float):
        revoke(sid, since + LIFETIME.total_seconds())
    session.clear()


def signed_in(
    tokens: Sequence[str], key: bytes, now: float, revoked: Callable[[str], bool]
) -> bool:
    """The session is a sign-in with a token still configured, within its lifetime,
    and not signed out (``revoked``)."""
    who, since, sid = session.get("who"), session.get("since"), session.get("sid")
    if not isinstance(who, str) or not isinstance(since, int | float):
        return False
    if not isinstance(sid, str) or not 0 <= now - since <= LIFETIME.total_seconds():
        return False
    found = False
    for token in tokens:
        found |= hmac.compare_digest(who, _mark(key, token))
    return found and not revoked(sid)


def csrf_token() -> str:
    """The session's CSRF token, made on first use (the sign-in form needs one too)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse (400) a form post whose CSRF token is missing or not the session's."""
    expected = session.get("csrf")
    presented = request.form.get("csrf", "")
    if not isinstance(expected, str) or not hmac.compare_digest(
        presented.encode(), expected.encode()
    ):
        abort(400, "the form's CSRF token is missing or out of date: reload the page")


# What every dashboard answer carries: no inline scripts or styles, no framing, no caching
# of pages that show instances.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
