"""Personal data kept only by choice: the allow-lists of what is stored otherwise.

GBG's state documents carry the person being checked (``context.subject``, step
``note``s, v1's ``data``) and GBG's webhook body is not published. Unless the operator
sets RECEIVER_STORE_PII, only the fields named here are stored: ids, statuses, the
outcome and advice codes of each step, the journey's name, id, version and times.
Everything else, known or not, is dropped: an allow-list, never a deny-list.
"""

from __future__ import annotations

import re
from typing import Any

# Each kept field is checked for what it means, not only for where it is:
# an advice code as GBG writes them ("resultcode.confirm.age"): dotted lower-case words,
# matched whole (no digits: no dates, no numbers, no names with capitals)...
_CODE = re.compile(r"[a-z][a-z_-]{0,63}(\.[a-z][a-z_-]{0,63}){1,8}")
# ...an outcome: a short label of a few words ("Of Age", "Not Of Age", "Refer")...
_LABEL = re.compile(r"[A-Za-z0-9+]{1,24}( [A-Za-z0-9+]{1,24}){0,4}")
_LABEL_LEN = 48
# ...a time: an RFC 3339 / ISO 8601 timestamp, nothing else.
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?")
_TEXT = 256  # longest string kept from an allow-listed field

# A shape says what to keep: True keeps a scalar, a dict keeps those keys (each with its
# own shape), a one-item list keeps every item by that item's shape, CODES keeps advice
# codes, LABEL a short label, TIME a timestamp (text or epoch number).
CODES, LABEL, TIME = "codes", "label", "time"
RESULT: dict[str, Any] = {"status": True, "outcome": LABEL, "advice": CODES}
JOURNEY: dict[str, Any] = {
    "name": True,
    "id": True,
    "version": True,
    "startedAt": TIME,
    "endedAt": TIME,
    "durationMilliSec": True,
}
STEP: dict[str, Any] = {"nodeId": True, "status": True, "result": RESULT}
STATE: dict[str, Any] = {
    "instanceId": True,
    "status": True,
    "metaData": {"createdTime": TIME, "completedTime": TIME},
    "context": {
        "process": {
            "journey": JOURNEY,
            "instance": {"id": True, "instanceId": True},
            "steps": [STEP],
        },
        "result": RESULT,
        "status": True,
    },
}
WEBHOOK: dict[str, Any] = STATE | {
    "instance_id": True,
    "journeyStatus": True,
    "data": {"instanceId": True, "status": True},
}

# Request headers kept with a webhook delivery; credentials and the rest are not.
HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "user-agent",
        "x-request-id",
        "x-correlation-id",
        "traceparent",
        "x-forwarded-proto",
    }
)


def minimal(document: Any, shape: Any) -> Any:
    """What ``shape`` allows of ``document``; None where nothing is allowed."""
    if shape is True:
        if isinstance(document, str):
            return document[:_TEXT]
        return document if isinstance(document, int | float | bool) else None
    if shape == CODES:
        return _codes(document)
    if shape == LABEL:
        return label(document)
    if shape == TIME:
        return time_value(document)
    if isinstance(shape, list):
        if not isinstance(document, list):
            return None
        return [minimal(item, shape[0]) for item in document]
    if not isinstance(document, dict):
        return None
    kept = {key: minimal(document[key], sub) for key, sub in shape.items() if key in document}
    return {key: value for key, value in kept.items() if value is not None and value != {}}


def label(value: Any) -> str | None:
    """``value`` if it is a short label (a few words of letters and digits), else None."""
    if not isinstance(value, str) or len(value) > _LABEL_LEN or not _LABEL.fullmatch(value):
        return None
    return None if re.search(r"\d{3}", value) else value  # no dates, postcodes, numbers


def time_value(value: Any) -> str | int | float | None:
    """``value`` if it is a timestamp (RFC 3339 text or an epoch number), else None."""
    if isinstance(value, str):
        return value if _TIME.fullmatch(value) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def allowed_headers(headers: Any, secret: str) -> dict[str, str]:
    """The allow-listed headers of ``headers`` (pairs), never the one named ``secret``."""
    wanted = HEADERS - {secret.lower()}
    return {k: v[:_TEXT] for k, v in headers if k.lower() in wanted}


def _codes(advice: Any) -> dict[str, Any] | None:
    """Advice reduced to its codes: strings that look like codes, alone or in lists;
    None when no code is left."""
    if not isinstance(advice, dict):
        return None
    kept: dict[str, Any] = {}
    for key, value in advice.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key):
            continue
        if isinstance(value, str) and _CODE.fullmatch(value):
            kept[key] = value
        elif isinstance(value, list):
            codes = [v for v in value if isinstance(v, str) and _CODE.fullmatch(v)]
            if codes:  # an empty list says nothing: left out
                kept[key] = codes
    return kept or None
