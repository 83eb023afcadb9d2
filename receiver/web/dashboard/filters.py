"""How the dashboard's pages show times and errors to a person (Jinja filters)."""

from __future__ import annotations

import math

from flask import Blueprint
from markupsafe import Markup

from receiver.shapes import rfc3339
from receiver.web import context


def register(bp: Blueprint) -> None:
    for name, shown_as in (("at", at), ("when", when), ("why", why), ("ago", ago), ("age", age)):
        bp.add_app_template_filter(shown_as, name)


def at(ts: float | None) -> str:
    return when(rfc3339(ts))


def when(shown: str | None) -> str:
    """An RFC 3339 time of the API's shapes, as a person reads it."""
    return shown.replace("T", " ").replace("Z", " UTC") if shown else "—"


# What a poll error's kind means, as a person reads it ("GBG answers 404" for http_404).
_WHY = {
    "timeout": "GBG did not answer in time",
    "connect": "no connection to GBG",
    "garbage": "GBG's answer was malformed",
    "token": "GBG's token endpoint failed",
    "auth": "GBG refused our credentials",
    "unknown_status": "GBG gave an undocumented status",
    "internal": "the receiver's own error",
}


def why(kind: str) -> str:
    status = kind.removeprefix("http_")
    return f"GBG answers {status}" if status.isdigit() else _WHY.get(kind, kind)


def ago(ts: float | None) -> Markup:
    """A time as how long ago (or how soon) it is, the exact time on hover."""
    if ts is None:
        return Markup("—")
    delta = context.services().clock() - ts
    if abs(delta) < 5:
        shown = "just now"
    elif delta > 0:
        shown = f"{age(delta)} ago"
    else:
        shown = f"in {age(-delta)}"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(rfc3339(ts), at(ts), shown)


def age(seconds: float | None) -> str:
    if not seconds:
        return "—"
    whole = math.floor(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 7200:
        return f"{whole // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
