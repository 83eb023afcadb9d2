"""Operator commands on the store: register, show, poll, list, resume, erase, purge, and
the outbox of messages to the application (outbox, replay). Each prints for people on a
terminal and JSON otherwise (``output``)."""

from __future__ import annotations

from typing import Any

import click

from receiver import notify, usecases
from receiver.cli import common, output
from receiver.cli.output import json_option
from receiver.domain.model import INSTANCE_ID, STATUSES
from receiver.errors import GbgError, Superseded, Throttled
from receiver.shapes import (
    instance_json,
    outbox_json,
    quarantined_json,
    timeline_json,
)
from receiver.store.schema import MAX_ID

INSTANCE = (
    ("instance", "instanceId"),
    ("status", "status"),
    ("outcome", "outcome"),
    ("found by", "source"),
    ("reference", "reference"),
    ("journey URL", "instanceUrl"),
    ("GBG status", "gbgStatus"),
    ("registered", "registeredAt"),
    ("webhook", "webhookReceivedAt"),
    ("last polled", "lastPolledAt"),
    ("next poll", "nextPollAt"),
    ("ended", "completedAt"),
    ("poll errors", "pollErrors"),
    ("gave up", "pollingGaveUp"),
    ("last error", "why"),
)
INSTANCES = (
    ("INSTANCE", "instanceId"),
    ("STATUS", "status"),
    ("OUTCOME", "outcome"),
    ("REFERENCE", "reference"),
    ("REGISTERED", "registeredAt"),
    ("LAST ERROR", "why"),
)
MESSAGES = (
    ("ID", "id"),
    ("INSTANCE", "instanceId"),
    ("STATUS", "status"),
    ("ATTEMPTS", "attempts"),
    ("LAST ERROR", "lastError"),
    ("NEXT ATTEMPT", "nextAttemptAt"),
)
SET_ASIDE = (
    ("ID", "id"),
    ("INSTANCE", "instanceId"),
    ("RECEIVED", "receivedAt"),
    ("TRIES", "foldTries"),
    ("WHY", "foldError"),
)


def _for_people(shown: dict[str, Any]) -> dict[str, Any]:
    """The instance with its last error in a line ("http_404: ..., 27 errors left")."""
    error = shown.get("lastError")
    if not error:
        return shown
    left = "" if shown.get("pollingGaveUp") else f", {error['errorsLeft']} errors left"
    return shown | {"why": f"{error['kind']}: {error['message']} ({error['at']}){left}"}


def _instance(shown: dict[str, Any], as_json: bool | None) -> None:
    output.one(shown if output.want_json(as_json) else _for_people(shown), INSTANCE, as_json)


@click.command()
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Override RECEIVER_RETENTION_DAYS for this run.",
)
def purge(days: float | None) -> None:
    """Delete raw deliveries and forget personal data older than the retention period."""
    deleted, forgotten = usecases.purge(common.services(quiet=True), days)
    click.echo(f"deleted {deleted} deliveries and messages, forgot {forgotten} instances' data")


@click.command()
@click.argument("instance_id")
@click.option("--reference", default=None, help="Your own reference for the journey.")
@json_option
def register(instance_id: str, reference: str | None, as_json: bool | None) -> None:
    """Register an instance; its webhook timeout starts now."""
    if not INSTANCE_ID.fullmatch(instance_id):
        raise click.BadParameter("1-128 characters of A-Z a-z 0-9 . _ : @ -", param_hint="ID")
    services = common.services(quiet=True)
    decision = usecases.register(services, instance_id, reference)
    _instance(instance_json(decision.instance), as_json)


@click.command()
@click.argument("instance_id")
@json_option
def show(instance_id: str, as_json: bool | None) -> None:
    """Show one instance, with its timeline: status changes and webhook deliveries."""
    services = common.services(quiet=True)
    instance = services.store.get(instance_id)
    if instance is None:
        raise click.ClickException(f"no such instance: {instance_id}")
    timeline = timeline_json(instance, services.store.history(instance_id))
    _instance(instance_json(instance) | {"timeline": timeline}, as_json)
    if not output.want_json(as_json):
        click.echo("timeline")
        for entry in timeline:
            click.echo(f"  {entry['at']}  {_said(entry)}")


def _said(entry: dict[str, Any]) -> str:
    """One timeline entry as a line for people."""
    match entry["kind"]:
        case "registered":
            return "registered"
        case "webhook":
            return f"webhook from {entry['peer']}, claims {entry['claim']}"
        case "fetch":
            seconds = f" in {entry['seconds']:.2f} s" if entry["seconds"] is not None else ""
            answer = (
                f"GBG says {entry['gbgStatus']}" if entry["outcome"] == "ok" else entry["outcome"]
            )
            return f"fetch: {answer}{seconds}"
        case "status":
            return f"{entry['from']} -> {entry['to']}, decided by {entry['decidedBy']}"
    return f"forward of message {entry['messageId']}: {entry['outcome']}"


@click.command()
@click.argument("instance_id")
@json_option
def poll(instance_id: str, as_json: bool | None) -> None:
    """Fetch an instance's state from GBG now (resumes a given-up instance)."""
    services = common.services(quiet=True)
    if services.gbg is None:
        raise click.ClickException("RECEIVER_GBG_CLIENT_ID: GBG credentials are not set")
    if services.store.get(instance_id) is None:
        raise click.ClickException(f"no such instance: {instance_id}")
    try:
        instance = usecases.poll_now(services, instance_id)
    except Throttled as exc:
        why = "GBG is failing, polling is paused" if exc.gbg_down else "the GBG rate limit"
        raise click.ClickException(f"{why}: try again in {exc.retry_after:.0f} s") from None
    if instance is None:
        raise click.ClickException("a poller is fetching it right now; try again in a second")
    _instance(instance_json(instance), as_json)


@click.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--reference", default=None, help="Only instances with this reference.")
@click.option("--given-up", is_flag=True, help="Only instances whose polling gave up.")
@click.option("--limit", default=50, type=click.IntRange(1, 1000))
@json_option
def list_(
    status: str | None, reference: str | None, given_up: bool, limit: int, as_json: bool | None
) -> None:
    """List instances, newest first."""
    page = common.services(quiet=True).store.page(
        status=status,
        reference=reference,
        given_up=True if given_up else None,
        limit=limit,
        after=None,
    )
    shown = [instance_json(i) for i in page]
    if not output.want_json(as_json):
        shown = [_for_people(i) for i in shown]
    output.rows(shown, INSTANCES, "no instances", as_json)


@click.command()
@click.option("--given-up", is_flag=True, required=True, help="Every instance that gave up.")
def resume(given_up: bool) -> None:
    """Poll again, from now and with a fresh error budget, every unfinished instance
    whose polling gave up."""
    resumed = usecases.resume_given_up(common.services(quiet=True))
    click.echo(f"resumed {resumed} instances")


@click.command()
@click.argument("instance_id")
@json_option
def erase(instance_id: str, as_json: bool | None) -> None:
    """Erase an instance's personal data and deliveries (its status and events stay)."""
    erased = usecases.erase(common.services(quiet=True), instance_id)
    if erased is None:
        raise click.ClickException(f"no such instance: {instance_id}")
    _instance(instance_json(erased), as_json)


@click.command()
@click.option("--failed", is_flag=True, help="Only messages that used up their attempts.")
@click.option("--limit", default=100, type=click.IntRange(1, 1000))
@json_option
def outbox(failed: bool, limit: int, as_json: bool | None) -> None:
    """List messages to the application (RECEIVER_FORWARD_URL), oldest first."""
    messages = common.services(quiet=True).store.messages(
        status="failed" if failed else None, limit=limit
    )
    output.rows([outbox_json(m) for m in messages], MESSAGES, "no messages", as_json)


@click.command()
@click.argument("message_id", metavar="MSG", type=int)
@json_option
def replay(message_id: int, as_json: bool | None) -> None:
    """Send a message to the application again, from now, with a fresh schedule."""
    try:
        message = notify.replay(common.services(quiet=True), message_id)
    except Superseded as exc:
        raise click.ClickException(f"not replayed: {exc.detail}") from None
    if message is None:
        raise click.ClickException(f"no such message: {message_id}")
    output.one(outbox_json(message), [(k, k) for k in ("id", "instanceId", "status")], as_json)


@click.command()
@click.option("--limit", default=100, type=click.IntRange(1, 1000))
@json_option
def quarantine(limit: int, as_json: bool | None) -> None:
    """List webhook deliveries set aside because they could not be folded, and why."""
    rows = [quarantined_json(r) for r in common.services(quiet=True).store.quarantined(limit=limit)]
    output.rows(rows, SET_ASIDE, "no deliveries set aside", as_json)


@click.command()
@click.argument("delivery_id", metavar="DELIVERY", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Every delivery set aside.")
def refold(delivery_id: int | None, every: bool) -> None:
    """Put a delivery set aside (or --all) back in the inbox, after a fix."""
    if (delivery_id is None) == (not every):
        raise click.UsageError("give one DELIVERY id or --all")
    if delivery_id is not None and not 0 < delivery_id <= MAX_ID:
        raise click.ClickException(f"no such delivery set aside: {delivery_id}")
    back = usecases.refold(common.services(quiet=True), delivery_id)
    if delivery_id is not None and not back:
        raise click.ClickException(f"no such delivery set aside: {delivery_id}")
    click.echo(f"{back} deliveries back in the inbox")


@click.command()
@click.argument("resource_id", metavar="RESOURCE")
@click.option("--reference", default=None, help="Your own reference for the journey.")
@json_option
def start(resource_id: str, reference: str | None, as_json: bool | None) -> None:
    """Start a journey at GBG (RESOURCE: the journey's resource id) and register it."""
    services = common.services(quiet=True)
    if services.gbg is None:
        raise click.ClickException("RECEIVER_GBG_CLIENT_ID: GBG credentials are not set")
    try:
        decision = usecases.start_journey(services, resource_id, {}, reference)
    except GbgError as exc:
        raise click.ClickException(f"GBG did not start the journey: {exc}") from None
    _instance(instance_json(decision.instance), as_json)


COMMANDS = (
    start,
    purge,
    register,
    show,
    poll,
    list_,
    resume,
    erase,
    outbox,
    replay,
    quarantine,
    refold,
)
