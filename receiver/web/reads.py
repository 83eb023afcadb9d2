"""What the API and the dashboard read alike: query arguments, the instance page with
its cursor, and one known instance. Bad input raises Problem (400/404)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping

from receiver import strictjson
from receiver.domain.model import INSTANCE_ID, STATUSES, Instance
from receiver.errors import Problem
from receiver.web import context

MAX_PAGE = 1000


def known(instance_id: str) -> Instance:
    """The instance, or a 404 that says whether its webhooks wait in the inbox (acknowledged,
    not folded yet: is a worker running?)."""
    if not INSTANCE_ID.fullmatch(instance_id):
        raise Problem("unknown-instance", "no such instance")
    store = context.services().store
    found = store.get(instance_id)
    if found is None:
        waiting = store.waiting_for(instance_id)
        if waiting:
            raise Problem(
                "instance-not-folded-yet",
                f"no such instance yet: {waiting} webhook deliveries for it wait in the inbox"
                " to be folded by a worker (is one running?)",
            )
        raise Problem("unknown-instance", "no such instance")
    return found


def instance_page(args: Mapping[str, str], default_limit: int) -> tuple[list[Instance], str | None]:
    """A page of instances by ?status=, ?reference=, ?givenUp=, ?cursor= and ?limit=,
    newest first, and the cursor of the next page (None on the last)."""
    status = args.get("status")
    if status is not None and status not in STATUSES:
        raise Problem("invalid-parameter", f"status: one of {', '.join(STATUSES)}", field="status")
    reference = args.get("reference")
    if reference is not None and (len(reference) > 256 or "\x00" in reference):
        raise Problem(
            "invalid-parameter", "reference: at most 256 characters, no NUL", field="reference"
        )
    given_up = args.get("givenUp")
    if given_up not in (None, "true", "false"):
        raise Problem("invalid-parameter", "givenUp: true or false", field="givenUp")
    cursor = args.get("cursor") or None
    after = None
    if cursor is not None:
        try:
            after = decode_cursor(cursor)
        except ValueError:
            raise Problem(
                "invalid-cursor", "cursor: use nextCursor as given", field="cursor"
            ) from None
    limit = int_arg(args, "limit", default_limit, 1, MAX_PAGE)
    rows = context.services().store.page(
        status=status,
        reference=reference,
        given_up=None if given_up is None else given_up == "true",
        limit=limit + 1,
        after=after,
    )
    page = rows[:limit]
    return page, encode_cursor(page[-1]) if len(rows) > limit else None


def int_arg(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Problem(
            "invalid-parameter", f"{name}: a whole number from {low} to {high}", field=name
        )
    return value


def encode_cursor(last: Instance) -> str:
    raw = json.dumps([last.registered_at, last.instance_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Raise ValueError for anything that is not a cursor this server made."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, last_id = strictjson.loads(raw)
        if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(last_id, str):
            raise TypeError("not a cursor")
        at = float(at)
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ValueError("malformed cursor") from exc
    if not math.isfinite(at) or not INSTANCE_ID.fullmatch(last_id):
        raise ValueError("malformed cursor")
    return at, last_id
