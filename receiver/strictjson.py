"""JSON as RFC 8259 has it: Python's parser also reads NaN, Infinity and 1e999 (as
infinity), which no store column, time or answer of ours can hold. Refused here, as is
a string holding NUL (``\\u0000``), which PostgreSQL's text cannot hold."""

from __future__ import annotations

import json
import math
from typing import Any


def loads(data: bytes | str, *, nul: bool = False) -> Any:
    """Parse ``data``; raise ValueError for invalid JSON, OutOfRange for what valid JSON
    holds and we cannot: a non-finite number, and (unless ``nul``: the caller stores no
    string of it as it is) a NUL character."""
    text = (
        data.decode(json.detect_encoding(data), "surrogatepass")
        if isinstance(data, bytes)
        else data
    )
    value = _DECODER.decode(text)  # what json.loads does, without a decoder made per call
    escaped = b"\\u0000" in data if isinstance(data, bytes) else "\\u0000" in data
    if not nul and escaped and _holds_nul(value):  # only JSON's escape brings a NUL in
        raise OutOfRange("a string holds a NUL character")
    return value


class OutOfRange(ValueError):
    """Valid JSON, with a value no column of ours can hold."""


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise OutOfRange(f"{text[:20]} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse, parse_float=_finite)
