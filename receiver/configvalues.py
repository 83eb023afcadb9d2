"""How each setting's text becomes its value: one parser per type of ``Settings``
field, each raising ValueError with what is wrong (``Settings.from_env`` names the
variable)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Set
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a whole number") from None


def _boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError(f"{raw!r} is not true or false")


def _tokens(raw: str) -> tuple[str, ...]:
    tokens = tuple(t.strip() for t in raw.split(",") if t.strip())
    if not tokens:
        raise ValueError("lists no token")
    return tokens


def _seconds(raw: str) -> tuple[float, ...]:
    """A list of seconds, "1,2,4"; "none" for none."""
    if raw.lower() == "none":
        return ()
    return tuple(_number(part.strip()) for part in raw.split(","))


PARSERS: dict[Any, Callable[[str], Any]] = {
    "str": str,
    "str | None": str,
    "int": _integer,
    "int | None": _integer,
    "float": _number,
    "bool": _boolean,
    "tuple[str, ...]": _tokens,
    "tuple[float, ...]": _seconds,
}


def unknown_names(env: Mapping[str, str], known: Set[str]) -> list[str]:
    """A problem for each RECEIVER_* name that is no setting: a typo must not pass."""
    suffixes = sorted(name.removeprefix("RECEIVER_") for name in known)
    problems = []
    for name in sorted(n for n in env if n.startswith("RECEIVER_") and n not in known):
        close = difflib.get_close_matches(name.removeprefix("RECEIVER_"), suffixes, n=1)
        hint = f"; did you mean RECEIVER_{close[0]}?" if close else ""
        problems.append(f"{name}: unknown variable{hint}")
    return problems
