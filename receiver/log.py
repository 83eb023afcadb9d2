"""Logging as events: JSON lines (or text), a request id, and redaction.

Log calls name a stable event and pass ids and durations as ``extra``:
``log.info("webhook.accepted", extra={"instance_id": ..., "duration_ms": ...})``.
The redaction filter replaces every configured secret wherever it appears and drops
fields that could carry personal data, so a careless call cannot leak them.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa

from receiver.config import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# A WSGI environ key: the app logged this request's outcome in an event of its own
# (an accepted webhook), so the access log adds no second line for it.
LOGGED = "receiver.logged"

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_PII_KEYS = {"subject", "identity", "body", "password", "token", "authorization"}
REDACTED = "[redacted]"


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value that must never appear in a log line."""
    values = [
        settings.gbg_client_secret,
        settings.gbg_password,
        settings.webhook_password,
        settings.webhook_api_key,
        settings.webhook_password_previous,
        settings.webhook_api_key_previous,
        settings.forward_secret,
        settings.forward_secret_previous,
        sa.engine.make_url(settings.database_url).password,
        *settings.api_tokens,
    ]
    return [v for v in values if v and len(v) >= 4]


class Redactor(logging.Filter):
    """Scrub secrets from messages and extras; drop fields that may hold personal data."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)
        # One pass over a text for every secret at once, longest first.
        self._any = re.compile("|".join(map(re.escape, self.secrets))) if self.secrets else None

    def scrub(self, text: str) -> str:
        return self._any.sub(REDACTED, text) if self._any is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        found = vars(record)
        for key in [k for k in found if k not in _STANDARD]:
            if key.lower() in _PII_KEYS:
                found[key] = REDACTED
            elif type(found[key]) is str:
                found[key] = self.scrub(found[key])
        if record.exc_info and not record.exc_text:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
        return True


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """Everything one log line says, in the order both formats show it."""
    line: dict[str, Any] = {
        "ts": _second(int(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
        "pid": record.process,
    }
    rid = request_id.get()
    if rid:
        line["request_id"] = rid
    line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k[0] != "_"})
    if record.exc_text:
        line["exc"] = record.exc_text
    return line


@functools.lru_cache(maxsize=4)
def _second(epoch: int) -> str:
    """A second's UTC time as the lines show it (a busy second's lines share one)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record), default=str)


class TextFormatter(logging.Formatter):
    """For people: time, level, logger and event, then every other field as key=value
    (a value with spaces, quotes or an equals sign quoted as JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        line = fields(record)
        head = [line.pop(k) for k in ("ts", "level", "logger", "event")]
        head[1] = head[1].upper()
        exc = line.pop("exc", None)
        pairs = [f"{key}={_text(value)}" for key, value in line.items()]
        text = " ".join([*map(str, head), *pairs])
        return f"{text}\n{exc}" if exc else text


def _text(value: Any) -> str:
    shown = value if isinstance(value, str) else json.dumps(value, default=str)
    if shown == "" or any(c in shown for c in ' "=\n'):
        return json.dumps(shown)
    return shown


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Route every logger to one handler with redaction; idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(Redactor(secrets_of(settings)))
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_receiver", False):
            root.removeHandler(old)
    handler._receiver = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # No line shows the caller's file and line: not looking them up is the logging
    # HOWTO's own advice (its "Optimization" section) and a tenth of a line's cost.
    logging._srcfile = None
