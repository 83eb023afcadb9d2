"""The simulator's control surface (``/_sim/...``): how tests and demos play the person
and GBG's faults. Not part of GBG's API; the receiver never calls it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask, Response, jsonify, request

if TYPE_CHECKING:
    from receiver.testing.simulator import Simulator


def add_control(app: Flask, sim: Simulator) -> None:
    """Add the control routes over ``sim`` to its app."""

    @app.post("/_sim/journeys")
    def journey() -> Response:
        spec = request.get_json(silent=True) or {}
        instance_id = sim.create(spec.get("instanceId"), spec.get("subject"), spec.get("note"))
        sim.finish(
            instance_id,
            spec.get("status", "Completed"),
            spec.get("outcome", "Of Age"),
            ends_in=float(spec.get("endsIn", 3)),
            webhook=spec.get("webhook", "send"),
            webhook_in=float(spec.get("webhookIn", 0)),
        )
        return jsonify({"instanceId": instance_id})

    @app.post("/_sim/instances/<instance_id>")
    def set_instance(instance_id: str) -> Response:
        spec = request.get_json(silent=True) or {}
        sim.set_status(instance_id, spec.get("status", "InProgress"), spec.get("outcome"))
        return jsonify({"instanceId": instance_id})

    @app.post("/_sim/faults")
    def fault() -> Response:
        spec = request.get_json(silent=True) or {}
        try:
            sim.add_fault_from(spec)
        except ValueError as exc:
            answer = jsonify({"error": str(exc)})
            answer.status_code = 400
            return answer
        return jsonify({"ok": True})

    @app.post("/_sim/latency")
    def latency() -> Response:
        sim.latency = float((request.get_json(silent=True) or {}).get("seconds", 0))
        return jsonify({"latency": sim.latency})

    @app.post("/_sim/tokens/expire")
    def expire() -> Response:
        sim.expire_tokens()
        return jsonify({"ok": True})

    @app.get("/_sim/calls")
    def calls() -> Response:
        with sim.lock:
            return jsonify({"calls": list(sim.calls), "tokenRequests": sim.token_requests})

    @app.get("/_sim/webhooks")
    def webhooks() -> Response:
        with sim.lock:
            return jsonify({"webhooks": list(sim.webhooks)})

    @app.post("/_sim/reset")
    def reset() -> Response:
        sim.reset()
        return jsonify({"ok": True})
