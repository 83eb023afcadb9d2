"""What operator commands print: a table or a short summary for people on a terminal,
JSON for scripts (when stdout is not a terminal, or with --json)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

_F = TypeVar("_F", bound=Callable[..., Any])
WIDEST = 40  # characters of a table cell; longer values are cut with an ellipsis

json_option: Callable[[_F], _F] = click.option(
    "--json/--human",
    "as_json",
    default=None,
    help="JSON (the default when stdout is not a terminal) or a summary for people.",
)


def want_json(as_json: bool | None) -> bool:
    return (not sys.stdout.isatty()) if as_json is None else as_json


def rows(
    items: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str]],
    empty: str,
    as_json: bool | None,
) -> None:
    """One JSON object per line, or a table of ``columns`` (header, key); ``empty`` when
    there is nothing to show to a person (scripts get no line at all)."""
    if want_json(as_json):
        for item in items:
            click.echo(json.dumps(item))
        return
    if not items:
        click.echo(empty)
        return
    table = [[header for header, _ in columns]]
    table += [[_cell(item.get(key)) for _, key in columns] for item in items]
    widths = [max(len(row[n]) for row in table) for n in range(len(columns))]
    for row in table:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def one(item: dict[str, Any], fields: Sequence[tuple[str, str]], as_json: bool | None) -> None:
    """One object: indented JSON, or ``fields`` (label, key) one per line."""
    if want_json(as_json):
        click.echo(json.dumps(item, indent=2))
        return
    width = max(len(label) for label, _ in fields)
    for label, key in fields:
        value = item.get(key)
        if value is not None and value != []:
            click.echo(f"{label.ljust(width)}  {_cell(value, widest=200)}")


def _cell(value: Any, widest: int = WIDEST) -> str:
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.replace("\n", " ")
    return text if len(text) <= widest else text[: widest - 1] + "…"
