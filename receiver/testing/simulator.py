"""A GBG GO stand-in over real HTTP, following GBG's published API (docs/contract.md).

It plays GBG for tests, demos and benchmarks: the token endpoint (password and
client-credentials grants, expiring tokens), journey start and state fetch in v1 and v2
shapes, the hosted journey behind every instanceUrl (``hosted.py``), the Webhook module
(which fires before the journey ends, and may be dropped, duplicated or late), and
faults (5xx, 429 with Retry-After, slow answers, HTML with a 200, expired tokens,
unknown instances). Scenarios are driven through a control surface under ``/_sim``
(``control.py``; docs/simulator.md lists every control).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

import requests
from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from receiver.testing.answers import (
    FINAL_STATUSES,
    SimInstance,
    demo_note,
    demo_subject,
    state_v1,
    state_v2,
)
from receiver.testing.control import add_control
from receiver.testing.faults import FAULT_KINDS, Fault, error_response, fault_response
from receiver.testing.hosted import add_hosted
from receiver.testing.module import WebhookModule

log = logging.getLogger("receiver.simulator")


class Simulator:
    """GBG GO's state, tokens and faults in memory; ``app`` serves them."""

    def __init__(
        self,
        *,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",  # noqa: S107 - the simulator's own demo secret
        username: str | None = None,
        password: str | None = None,
        token_lifetime: float = 3600.0,
        webhook: WebhookModule | None = None,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password = username, password
        self.token_lifetime = token_lifetime
        self.webhook = webhook or WebhookModule()
        self.lock = threading.Lock()
        self.session = requests.Session()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.instances: dict[str, SimInstance] = {}
            self.tokens: dict[str, float] = {}
            self.faults: list[Fault] = []
            self.latency = 0.0
            self.calls: list[dict[str, Any]] = []
            self.token_requests = 0
            self.webhooks: list[dict[str, Any]] = []

    # -- scenario controls (also used directly by tests) ------------------------------------

    def create(
        self,
        instance_id: str | None = None,
        subject: dict[str, Any] | None = None,
        note: dict[str, Any] | None = None,
    ) -> str:
        instance_id = instance_id or str(uuid.uuid4())
        with self.lock:
            self.instances.setdefault(
                instance_id,
                SimInstance(
                    instance_id,
                    "sim-journey@latest",
                    time.time(),
                    subject=subject if subject is not None else demo_subject(),
                    note=note if note is not None else demo_note(),
                ),
            )
        return instance_id

    def set_status(self, instance_id: str, status: str, outcome: str | None = None) -> None:
        self.create(instance_id)
        with self.lock:
            inst = self.instances[instance_id]
            inst.status, inst.outcome = status, outcome
            inst.completed = time.time() if status in FINAL_STATUSES else None

    def finish(
        self,
        instance_id: str,
        status: str = "Completed",
        outcome: str | None = "Of Age",
        *,
        ends_in: float = 0.0,
        webhook: str = "send",
        webhook_in: float = 0.0,
    ) -> None:
        """End the journey ``ends_in`` seconds from now; the module posts ``webhook_in`` from now.

        ``webhook`` is send, drop or duplicate. GBG's module runs before the journey's end,
        so an early webhook (webhook_in < ends_in) is the normal case.
        """
        self.create(instance_id)
        _later(ends_in, self.set_status, instance_id, status, outcome)
        if webhook in ("send", "duplicate"):
            for _ in range(2 if webhook == "duplicate" else 1):
                _later(webhook_in, self.post_webhook, instance_id, status)

    def add_fault(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        with self.lock:
            self.faults.append(replace(fault))  # counted down here, never in the caller's copy

    def add_fault_from(self, spec: dict[str, Any]) -> None:
        """A fault as the control surface describes it (raises ValueError if it is bad)."""
        self.add_fault(
            Fault(
                kind=str(spec.get("kind")),
                count=int(spec.get("count", 1)),
                on=spec.get("on", "fetch"),
                instance_id=spec.get("instanceId"),
                retry_after=spec.get("retryAfter"),
                delay=float(spec.get("delay", 15.0)),
            )
        )

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def post_webhook(self, instance_id: str, status: str) -> None:
        if not self.webhook.url:
            return
        with self.lock:
            known = self.instances.get(instance_id)
            subject = known.subject if known else {}
        entry = self.webhook.post(self.session, instance_id, status, subject)
        with self.lock:
            self.webhooks.append(entry)

    def fetches(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                c
                for c in self.calls
                if c["kind"] == "fetch" and (instance_id is None or c["instanceId"] == instance_id)
            ]

    # -- GBG's surface ---------------------------------------------------------------------

    def _take_fault(self, on: str, instance_id: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.on == on and fault.instance_id in (None, instance_id):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _authorized(self) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self.lock:
            expires = self.tokens.get(token)
        return scheme == "Bearer" and expires is not None and expires > time.time()

    def token(self) -> Response:
        with self.lock:
            self.token_requests += 1
        fault = self._take_fault("token", None)
        if fault is not None:
            answer = fault_response(fault)
            if answer is not None:
                return answer
        form = request.form
        good_client = secrets.compare_digest(form.get("client_id", ""), self.client_id) and (
            secrets.compare_digest(form.get("client_secret", ""), self.client_secret)
        )
        grant = form.get("grant_type")
        if grant == "password":
            ok = self.username is None or (
                form.get("username") == self.username and form.get("password") == self.password
            )
        else:
            ok = grant == "client_credentials" and form.get("scope") == "gbg.token"
        if not (good_client and ok):
            return error_response(401, "invalid_client")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = time.time() + self.token_lifetime
        return jsonify(
            {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_lifetime)}
        )

    def start(self, version: str) -> Response:
        if not self._authorized():
            return error_response(401, "invalid_token")
        fault = self._take_fault("start", None)
        if fault is not None and (refusal := fault_response(fault)) is not None:
            return refusal
        body = request.get_json(silent=True) or {}
        context = body.get("context")
        if not isinstance(context, dict):
            context = {}
        instance_id = self.create(subject=context.get("subject") or demo_subject())
        with self.lock:
            self.instances[instance_id].resource_id = str(body.get("resourceId", "unknown@latest"))
        answer: dict[str, Any] = {"instanceId": instance_id}
        if version == "v2":
            answer["instanceUrl"] = f"{request.host_url}journey/{instance_id}"
        return jsonify(answer)

    def fetch(self, version: str) -> Response:
        body = request.get_json(silent=True) or {}
        instance_id = body.get("instanceId") if isinstance(body, dict) else None
        entry = {
            "kind": "fetch",
            "version": version,
            "instanceId": instance_id,
            "start": time.time(),
        }
        try:
            answer = self._fetch(version, instance_id)
        finally:
            entry["end"] = time.time()
        entry["status"] = answer.status_code if answer is not None else "timeout"
        if answer is not None and answer.status_code == 200:
            entry["answer"] = (answer.get_json(silent=True) or {}).get("status")
        with self.lock:
            self.calls.append(entry)
        if answer is None:
            return error_response(504, "gateway timeout")
        return answer

    def _fetch(self, version: str, instance_id: Any) -> Response | None:
        if self.latency:
            time.sleep(self.latency)
        if not self._authorized():
            return error_response(401, "invalid_token")
        fault = self._take_fault("fetch", instance_id)
        if fault is not None:
            return fault_response(fault)
        with self.lock:
            inst = self.instances.get(instance_id) if isinstance(instance_id, str) else None
            doc = state_v1(inst) if inst and version == "v1" else state_v2(inst) if inst else None
        if doc is None:
            return error_response(404, "instance not found")
        return jsonify(doc)

    # -- the control surface ------------------------------------------------------------------

    def app(self) -> Flask:
        app = Flask("gbg-simulator")
        app.json.sort_keys = False  # type: ignore[attr-defined]
        app.add_url_rule("/as/token.oauth2", "token", self.token, methods=["POST"])
        for version, prefix in (("v1", "/captain/api/journey"), ("v2", "/v2/captain/journey")):
            app.add_url_rule(
                f"{prefix}/start",
                f"start_{version}",
                lambda v=version: self.start(v),
                methods=["POST"],
            )
            app.add_url_rule(
                f"{prefix}/state/fetch",
                f"fetch_{version}",
                lambda v=version: self.fetch(v),
                methods=["POST"],
            )

        add_control(app, self)
        add_hosted(app, self)
        return app

    def server(self, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
        """A threaded HTTP server for this simulator (port 0: an ephemeral one)."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        return make_server(host, port, self.app(), threaded=True)


def _later(delay: float, fn: Any, *args: Any) -> None:
    timer = threading.Timer(max(delay, 0.0), fn, args)  # 0: at once, on its own thread
    timer.daemon = True
    timer.start()
