"""The web layer, the only one with Flask: the webhook (in front of Flask, see
``receiver.web.webhook``), the API, the dashboard and the health checks."""

from __future__ import annotations

import ipaddress
import logging
import time

from flask import Flask, Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from receiver.config import Settings
from receiver.errors import Problem
from receiver.log import request_id
from receiver.services import Services, build_services
from receiver.web import api, bodies, exchange, health, problems, webhook
from receiver.web.dashboard import bp as dashboard_bp
from receiver.web.dashboard import signin

log = logging.getLogger("receiver.web")

# /metrics and the dashboard answer the internal network only, however the service is
# reached (a proxy's allow-list, or a port published straight from the container): the
# client's address, after RECEIVER_TRUSTED_PROXIES hops, is loopback or private.
INTERNAL = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
OPERATORS_ONLY = ("/metrics", "/dashboard")


def internal(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in INTERNAL)


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """The WSGI app: the webhook endpoint, the instance API, the dashboard and health checks."""
    if services is None:
        services = build_services(settings or Settings.from_env())
    settings = services.settings
    settings.check_web()
    if settings.webhook_auth == "none":
        log.warning(
            "webhook.unauthenticated",
            extra={"detail": "anyone can post webhooks: RECEIVER_WEBHOOK_AUTH=none, for demos"},
        )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = bodies.werkzeug_limit(settings.max_body_bytes)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["receiver"] = services
    app.wsgi_app = webhook.WebhookEndpoint(services, app.wsgi_app)  # type: ignore[method-assign]
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )

    app.register_blueprint(api.bp)
    app.register_blueprint(health.health)
    signin.configure(app, settings.api_tokens)
    app.register_blueprint(dashboard_bp)

    @app.before_request
    def _start() -> None:
        g.request_id = exchange.request_id_for(request.headers.get("X-Request-ID", ""))
        g.token = request_id.set(g.request_id)
        g.started = time.perf_counter()
        path = request.path
        if path.startswith(OPERATORS_ONLY) and not internal(request.remote_addr):
            raise Problem("forbidden", "for the internal network only")

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        exchange.observe(services.metrics, request.method, endpoint, response.status_code, seconds)
        return response

    @app.teardown_request
    def _reset(_exc: BaseException | None) -> None:
        token = g.pop("token", None)
        if token is not None:
            request_id.reset(token)

    problems.register(app)
    return app
