"""GBG's Webhook module as the simulator plays it: where it posts, with which
credentials, and what it sends."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class WebhookModule:
    """Where and how the journey's Webhook module posts."""

    url: str | None = None
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    api_key_header: str = "X-API-Key"
    message: str = "gbg-receiver simulator"

    def headers(self) -> dict[str, str]:
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        if self.api_key is not None:
            return {self.api_key_header: self.api_key}
        return {}

    def post(
        self, session: requests.Session, instance_id: str, status: str, subject: dict[str, Any]
    ) -> dict[str, Any]:
        """POST as the module does near the journey's end; answer what came of it."""
        # GBG's body is unpublished: this one carries the person too, the worst case.
        body = {
            "instanceId": instance_id,
            "status": status,
            "message": self.message,
            "context": {"subject": subject},
        }
        entry: dict[str, Any] = {"instanceId": instance_id, "at": time.time()}
        try:
            answer = session.post(
                self.url or "", json=body, headers=self.headers(), timeout=(3, 10)
            )
            entry["status"] = answer.status_code
        except requests.RequestException as exc:
            entry["status"] = type(exc).__name__
        return entry
