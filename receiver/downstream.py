"""Sending one message to the application: Standard Webhooks headers, one POST under a
total deadline, the answer read as delivered or as an error to retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from receiver import httpread
from receiver.domain.retries import MAX_RETRY_AFTER
from receiver.shapes import webhook_id

TIMEOUT = (3.05, 10.0)  # connect, read: the whole attempt ends within their sum
MAX_ANSWER = 1024 * 1024  # bytes of the application's answer read, at most (it is ignored)


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: delivered (``error`` None) or why not."""

    error: str | None
    retry_after: float | None = None


class Downstream:
    """The application's endpoint (RECEIVER_FORWARD_URL) and our signing key."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        pool: int = 8,
        timeout: tuple[float, float] = TIMEOUT,
        previous: str | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        # During a rotation each message carries a signature by either secret (Standard
        # Webhooks: space-separated), so the application may verify with the old or new.
        self._signers = [Webhook(s) for s in (secret, previous) if s is not None]
        self.session = httpread.session(pool)
        self.session.trust_env = False

    def send(self, seq: int, body: str) -> Attempt:
        """POST the message signed now (the receiver checks the timestamp is fresh)."""
        msg_id = webhook_id(seq)
        now = datetime.now(UTC)  # the real time, whatever clock the service runs on
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": " ".join(s.sign(msg_id, now, body) for s in self._signers),
            "Content-Type": "application/json",
            "User-Agent": "gbg-receiver",
        }
        try:
            response, _ = httpread.post(
                self.session,
                self.url,
                "forward",
                timeout=self.timeout,
                max_bytes=MAX_ANSWER,
                data=body.encode(),
                headers=headers,
            )
        except httpread.TransportError as exc:
            return Attempt(exc.kind)
        if 200 <= response.status_code < 300:
            return Attempt(None)
        wait = httpread.retry_after(response.headers, MAX_RETRY_AFTER)
        return Attempt(f"http_{response.status_code}", wait)
