"""JSON as RFC 8259 has it: Python's parser also reads NaN, Infinity and 1e999 (as
infinity), which no store column, time or answer of ours can hold. Refused here."""

from __future__ import annotations

import json
import math
from typing import Any


def loads(data: bytes | str) -> Any:
    """Parse ``data``; raise ValueError for invalid JSON and for non-finite numbers."""
    return json.loads(data, parse_constant=_refuse, parse_float=_finite)


class OutOfRange(ValueError):
    """Valid JSON, with a number no float can hold."""


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise OutOfRange(f"{text[:20]} is out of range")
    return value
