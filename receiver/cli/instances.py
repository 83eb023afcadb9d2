"""Operator commands on the store: register, show, poll, list, resume, erase, purge, and
the outbox of messages to the application (outbox, replay)."""

from __future__ import annotations

import json

import click

from receiver import notify, usecases
from receiver.cli import common
from receiver.domain.model import INSTANCE_ID, STATUSES
from receiver.errors import GbgError, Superseded, Throttled
from receiver.shapes import (
    delivery_json,
    event_json,
    instance_json,
    outbox_json,
    quarantined_json,
)
from receiver.store.schema import MAX_ID


@click.command()
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Override RECEIVER_RETENTION_DAYS for this run.",
)
def purge(days: float | None) -> None:
    """Delete raw deliveries and forget personal data older than the retention period."""
    deleted, forgotten = usecases.purge(common.services(), days)
    click.echo(f"deleted {deleted} deliveries and messages, forgot {forgotten} instances' data")


@click.command()
@click.argument("instance_id")
@click.option("--reference", default=None, help="Your own reference for the journey.")
def register(instance_id: str, reference: str | None) -> None:
    """Register an instance; its webhook timeout starts now."""
    if not INSTANCE_ID.fullmatch(instance_id):
        raise click.BadParameter("1-128 characters of A-Z a-z 0-9 . _ : @ -", param_hint="ID")
    services = common.services()
    decision = usecases.register(services, instance_id, reference)
    common.echo_json(instance_json(decision.instance))


@click.command()
@click.argument("instance_id")
def show(instance_id: str) -> None:
    """Show one instance, with its timeline: status changes and webhook deliveries."""
    services = common.services()
    instance = services.store.get(instance_id)
    if instance is None:
        raise click.ClickException(f"no such instance: {instance_id}")
    changes = [
        {"at": e["at"], "what": f"{e['previousStatus']} -> {e['status']} ({e['source']})"}
        for e in map(event_json, services.store.events_for(instance_id))
    ]
    hooks = [
        {"at": d["receivedAt"], "what": f"webhook from {d['peer']}, claims {d['claim']}"}
        for d in map(delivery_json, services.store.deliveries_for(instance_id))
    ]
    timeline = sorted(changes + hooks, key=lambda entry: entry["at"] or "")
    common.echo_json(instance_json(instance) | {"timeline": timeline})


@click.command()
@click.argument("instance_id")
def poll(instance_id: str) -> None:
    """Fetch an instance's state from GBG now (resumes a given-up instance)."""
    services = common.services()
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
    common.echo_json(instance_json(instance))


@click.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--reference", default=None, help="Only instances with this reference.")
@click.option("--given-up", is_flag=True, help="Only instances whose polling gave up.")
@click.option("--limit", default=50, type=click.IntRange(1, 1000))
def list_(status: str | None, reference: str | None, given_up: bool, limit: int) -> None:
    """List instances, newest first."""
    page = common.services().store.page(
        status=status,
        reference=reference,
        given_up=True if given_up else None,
        limit=limit,
        after=None,
    )
    for instance in page:
        click.echo(json.dumps(instance_json(instance)))


@click.command()
@click.option("--given-up", is_flag=True, required=True, help="Every instance that gave up.")
def resume(given_up: bool) -> None:
    """Poll again, from now and with a fresh error budget, every unfinished instance
    whose polling gave up."""
    resumed = usecases.resume_given_up(common.services())
    click.echo(f"resumed {resumed} instances")


@click.command()
@click.argument("instance_id")
def erase(instance_id: str) -> None:
    """Erase an instance's personal data and deliveries (its status and events stay)."""
    erased = usecases.erase(common.services(), instance_id)
    if erased is None:
        raise click.ClickException(f"no such instance: {instance_id}")
    common.echo_json(instance_json(erased))


@click.command()
@click.option("--failed", is_flag=True, help="Only messages that used up their attempts.")
@click.option("--limit", default=100, type=click.IntRange(1, 1000))
def outbox(failed: bool, limit: int) -> None:
    """List messages to the application (RECEIVER_FORWARD_URL), oldest first."""
    messages = common.services().store.messages(status="failed" if failed else None, limit=limit)
    for message in messages:
        click.echo(json.dumps(outbox_json(message)))


@click.command()
@click.argument("message_id", metavar="MSG", type=int)
def replay(message_id: int) -> None:
    """Send a message to the application again, from now, with a fresh schedule."""
    try:
        message = notify.replay(common.services(), message_id)
    except Superseded as exc:
        raise click.ClickException(f"not replayed: {exc.detail}") from None
    if message is None:
        raise click.ClickException(f"no such message: {message_id}")
    common.echo_json(outbox_json(message))


@click.command()
@click.option("--limit", default=100, type=click.IntRange(1, 1000))
def quarantine(limit: int) -> None:
    """List webhook deliveries set aside because they could not be folded, and why."""
    for row in common.services().store.quarantined(limit=limit):
        click.echo(json.dumps(quarantined_json(row)))


@click.command()
@click.argument("delivery_id", metavar="DELIVERY", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Every delivery set aside.")
def refold(delivery_id: int | None, every: bool) -> None:
    """Put a delivery set aside (or --all) back in the inbox, after a fix."""
    if (delivery_id is None) == (not every):
        raise click.UsageError("give one DELIVERY id or --all")
    if delivery_id is not None and not 0 < delivery_id <= MAX_ID:
        raise click.ClickException(f"no such delivery set aside: {delivery_id}")
    back = usecases.refold(common.services(), delivery_id)
    if delivery_id is not None and not back:
        raise click.ClickException(f"no such delivery set aside: {delivery_id}")
    click.echo(f"{back} deliveries back in the inbox")


@click.command()
@click.argument("resource_id", metavar="RESOURCE")
@click.option("--reference", default=None, help="Your own reference for the journey.")
def start(resource_id: str, reference: str | None) -> None:
    """Start a journey at GBG (RESOURCE: the journey's resource id) and register it."""
    services = common.services()
    if services.gbg is None:
        raise click.ClickException("RECEIVER_GBG_CLIENT_ID: GBG credentials are not set")
    try:
        decision = usecases.start_journey(services, resource_id, {}, reference)
    except GbgError as exc:
        raise click.ClickException(f"GBG did not start the journey: {exc}") from None
    common.echo_json(instance_json(decision.instance))


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
