"""POST /webhooks/gbg: authenticate, validate, append to the inbox, acknowledge.

GBG's Webhook module fires before the journey ends, and its body is not published. So
this endpoint only finds the instance id and commits the delivery to the inbox; it
answers 202 after that commit. A worker folds the delivery into its instance (asking for
a confirming state fetch) a moment later; nothing here decides a status.

It is the service's hot path, so it is a plain WSGI callable in front of the Flask app
(which serves every other path): Flask's per-request machinery (its contexts, routing,
hooks and response objects) cost more CPU than all of this endpoint's own work. What
Flask's hooks do for the other routes it does too, through the same functions: the
request id, the metrics, RFC 9457 answers (``receiver.web.problems``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import InternalServerError, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from receiver import usecases
from receiver.config import Settings
from receiver.domain.model import INSTANCE_ID
from receiver.domain.privacy import HEADERS, WEBHOOK, allowed_headers, minimal
from receiver.errors import Problem, StoreUnavailable
from receiver.log import LOGGED, request_id
from receiver.services import Services
from receiver.store.inbox import Delivery
from receiver.web import exchange, problems
from receiver.web.bodies import parse_object, read_body, werkzeug_limit
from receiver.web.exchange import WEBHOOK_PATH

log = logging.getLogger("receiver.webhook")

# Where GBG's unpublished body may carry the instance id, in the contract's order.
ID_PATHS = (
    ("instanceId",),
    ("instance_id",),
    ("data", "instanceId"),
    ("context", "process", "instance", "id"),
    ("context", "process", "instance", "instanceId"),
)
CLAIM_PATHS = (("status",), ("data", "status"), ("context", "status"), ("journeyStatus",))
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class WebhookEndpoint:
    """The WSGI app: ``/webhooks/gbg`` here, every other path to ``app`` (Flask's)."""

    def __init__(self, services: Services, app: WSGIApp) -> None:
        self.services = services
        self.app = app
        self.limit = werkzeug_limit(services.settings.max_body_bytes)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != WEBHOOK_PATH:
            return self.app(environ, start_response)
        started = time.perf_counter()
        request = Request(environ)
        request.max_content_length = self.limit
        rid = exchange.request_id_for(header(environ, "X-Request-ID"))
        token = request_id.set(rid)
        try:
            status, headers, body = self._answer(request, started)
        finally:
            request_id.reset(token)
        headers["X-Request-ID"] = rid
        headers["Content-Length"] = str(len(body))
        exchange.observe(
            self.services.metrics,
            request.method,
            WEBHOOK_PATH,
            status,
            time.perf_counter() - started,
        )
        start_response(f"{status} {HTTP_STATUS_CODES[status]}", list(headers.items()))
        return [body]

    def _answer(self, request: Request, started: float) -> problems.Answer:
        if request.method != "POST":
            return problems.http_error(MethodNotAllowed(["POST"]))
        try:
            instance_id = self._accept(request, started)
        except Problem as exc:
            return problems.of_problem(exc)
        except StoreUnavailable as exc:
            return problems.store_down(exc, WEBHOOK_PATH)
        except Exception:
            log.exception("http.unhandled", extra={"path": WEBHOOK_PATH, "method": "POST"})
            return problems.http_error(InternalServerError())
        text = json.dumps({"instanceId": instance_id}, separators=(",", ":")) + "\n"
        return 202, {"Content-Type": "application/json"}, text.encode()

    def _accept(self, request: Request, started: float) -> str:
        services = self.services
        authenticate(services.settings, request)
        body = read_body(request)
        payload = parse_object(body)
        instance_id = find_instance_id(payload, request)
        claim = _first(payload, CLAIM_PATHS)
        if not services.settings.store_pii:  # GBG's body is unpublished: keep what is known safe
            body = json.dumps(minimal(payload, WEBHOOK), separators=(",", ":")).encode()
        delivery = Delivery(
            instance_id=instance_id,
            received_at=services.clock(),
            body=body,
            headers=allowed_headers(
                _offered(request.environ), secret=services.settings.webhook_api_key_header
            ),
            peer=request.remote_addr,
            claim=str(claim)[:64] if claim is not None else None,
        )
        usecases.record_webhook(services, delivery)
        # One line per webhook, the access log's included (it skips requests marked LOGGED).
        log.info(
            "webhook.accepted",
            extra={
                "status": 202,
                "instance_id": instance_id,
                "peer": request.remote_addr,
                "scheme": request.scheme,
                "host": request.host,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        request.environ[LOGGED] = True
        return instance_id


def authenticate(settings: Settings, request: Request) -> None:
    """Accept configured Basic credentials or the API key, each also in its previous
    value while one is set (a rotation); compare in constant time, every value."""
    if settings.webhook_auth == "none" and not settings.webhook_credentials_set:
        return
    ok = False
    if settings.webhook_username is not None:
        for password in (settings.webhook_password, settings.webhook_password_previous):
            if password is not None:
                ok |= _basic_matches(
                    header(request.environ, "Authorization"), settings.webhook_username, password
                )
    presented = header(request.environ, settings.webhook_api_key_header).encode()
    for key in (settings.webhook_api_key, settings.webhook_api_key_previous):
        if key is not None:
            for accepted in (key, "Basic " + base64.b64encode(key.encode()).decode()):
                ok |= hmac.compare_digest(presented, accepted.encode())
    if not ok:
        challenge = 'Basic realm="gbg-receiver"'
        if settings.webhook_username is None:
            challenge = f'ApiKey header="{settings.webhook_api_key_header}"'
        log.warning("webhook.unauthorized", extra={"peer": request.remote_addr})
        raise Problem(
            "unauthorized", "missing or wrong credentials", {"WWW-Authenticate": challenge}
        )


def header(environ: dict[str, Any], name: str) -> str:
    """A request header, read from the WSGI environ as Werkzeug's headers read it ("" if
    absent): the hot path's way, without building a headers object."""
    return str(environ.get(_environ_key(name), ""))


def _environ_key(name: str) -> str:
    """Where WSGI puts header ``name``: HTTP_ and its name, but for the body's two."""
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def _offered(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's non-empty headers among those a delivery may keep, named as
    Werkzeug names them."""
    return [(name, environ[key]) for name, key in _KEEPABLE if environ.get(key)]


_KEEPABLE = tuple((name.title(), _environ_key(name)) for name in sorted(HEADERS))


def _basic_matches(authorization: str, username: str, password: str) -> bool:
    scheme, _, encoded = authorization.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    user, _, secret = decoded.partition(b":")
    # Both comparisons always run, so timing tells nothing about which part was wrong.
    same_user = hmac.compare_digest(user, username.encode())
    same_secret = hmac.compare_digest(secret, password.encode())
    return scheme.lower() == "basic" and same_user and same_secret


def find_instance_id(payload: dict[str, Any], request: Request) -> str:
    """The first id found at the contract's places, then ?instanceId=; 422 if none or bad."""
    found = _first(payload, ID_PATHS)
    if found is None:
        found = request.args.get("instanceId")
    if found is None:
        raise Problem("missing-instance-id", "no instanceId in the body or query string")
    if not isinstance(found, str) or not INSTANCE_ID.fullmatch(found):
        raise Problem(
            "invalid-instance-id",
            "ids are 1-128 characters of A-Z a-z 0-9 . _ : @ -",
            field="instanceId",
        )
    return found


def _first(payload: dict[str, Any], paths: tuple[tuple[str, ...], ...]) -> Any:
    for path in paths:
        node: Any = payload
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None
