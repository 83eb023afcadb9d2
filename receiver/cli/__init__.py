"""The ``gbg-receiver`` command line (also ``python -m receiver``)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
from types import FrameType
from typing import Any, NoReturn

import click

from receiver.cli import common, instances
from receiver.config import child_environ
from receiver.errors import ConfigError, StoreUnavailable
from receiver.log import configure_logging
from receiver.supervise import greeting, simulator_options, supervise

log = logging.getLogger("receiver.cli")


class _Commands(click.Group):
    """Every command's configuration and store errors become one clear line, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        except StoreUnavailable as exc:
            raise click.ClickException(f"the store is unavailable: {exc}") from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gbg-receiver")
@click.option(
    "--env-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Read the service's environment file first (systemd's KEY=VALUE lines; its "
    "values win), e.g. /etc/gbg-receiver/env.",
)
def main(env_file: str | None) -> None:
    """gbg-receiver: GBG GO webhooks plus a polling fallback, reconciled in one store."""
    if env_file:
        common.load_env_file(env_file)


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema (idempotent)."""
    from receiver.migrations import upgrade

    services = common.services()
    try:
        upgrade(services.store.engine)
    except Exception as exc:
        raise click.ClickException(f"migration failed: {type(exc).__name__}: {exc}") from None
    click.echo("schema is up to date")


@main.command()
def web() -> NoReturn:
    """Serve the webhook and the API with gunicorn, with the settings in receiver.web."""
    common.web_settings()  # a bad variable stops here, with its name, before gunicorn starts
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:receiver.web.gunicorn_conf",
        "receiver.web.wsgi:app",
    ]
    os.execv(sys.executable, args)  # noqa: S606 - becomes gunicorn; signals reach it directly


@main.command()
def poller() -> None:
    """Run the polling fallback (any number of pollers may run at once)."""
    from receiver.workers import worker

    services = common.services(counts=True)
    if services.gbg is None:
        raise click.ClickException(
            "RECEIVER_GBG_CLIENT_ID: the poller needs GBG credentials "
            "(RECEIVER_GBG_CLIENT_ID and RECEIVER_GBG_CLIENT_SECRET)"
        )
    worker.run(services)


@main.command()
@click.option(
    "--simulator",
    "with_simulator",
    is_flag=True,
    help="Also run the bundled GBG simulator on the configured loopback "
    "RECEIVER_GBG_BASE_URL, accepting the configured GBG client id and secret.",
)
def serve(with_simulator: bool) -> None:
    """Run web (gunicorn) and poller as two supervised children."""
    settings = common.web_settings()
    configure_logging(settings)
    if not settings.gbg_configured:
        raise click.ClickException(
            "RECEIVER_GBG_CLIENT_ID: the poller needs GBG credentials "
            "(RECEIVER_GBG_CLIENT_ID and RECEIVER_GBG_CLIENT_SECRET)"
        )
    me = [sys.executable, "-m", "receiver"]
    children: dict[str, list[str]] = {}
    if with_simulator:
        children["simulator"] = [*me, "simulator", *simulator_options(settings)]
        click.echo(
            f"GBG is the bundled simulator at {settings.gbg_url}. Try a journey: "
            f"curl -s -X POST {settings.gbg_url}/_sim/journeys -d '{{\"endsIn\": 3}}' "
            f"-H 'Content-Type: application/json'",
            err=True,
        )
    children["web"] = [*me, "web"]
    children["poller"] = [*me, "poller"]
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if settings.metrics_dir is None:  # web and poller count into one place
            env["RECEIVER_METRICS_DIR"] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="gbg-receiver-metrics-")
            )
        code = supervise(children, child_environ(env), greeting(settings, with_simulator))
    raise SystemExit(code)


@main.command("copy-store")
@click.argument("source_url")
def copy_store(source_url: str) -> None:
    """Copy every row from SOURCE_URL into the (migrated, empty) RECEIVER_DATABASE_URL."""
    from receiver.store.copy import copy_from
    from receiver.store.engine import Database

    services = common.services()
    try:
        source = Database.from_url(source_url)
        copied = copy_from(source, services.store.db)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(", ".join(f"{n} {table}" for table, n in copied.items()) + " copied")


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
def backup(path: str) -> None:
    """Copy the SQLite store, while it serves, to PATH (a new file, mode 0600).
    PostgreSQL: pg_dump (deploy/README.md)."""
    from receiver.store.copy import backup as backup_to

    try:
        size = backup_to(common.services(quiet=True).store.db, path)
    except (ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path}: {size} bytes")


@main.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8001, type=int)
@click.option("--client-id", default="sim-client")
@click.option("--client-secret", default="sim-secret")
@click.option("--token-lifetime", default=3600.0, type=float)
@click.option("--webhook-url", default=None, help="Where the Webhook module posts.")
@click.option("--webhook-username", default=None)
@click.option("--webhook-password", default=None)
@click.option("--webhook-api-key", default=None)
@click.option("--webhook-api-key-header", default="X-API-Key")
def simulator(
    host: str,
    port: int,
    client_id: str,
    client_secret: str,
    token_lifetime: float,
    webhook_url: str | None,
    webhook_username: str | None,
    webhook_password: str | None,
    webhook_api_key: str | None,
    webhook_api_key_header: str,
) -> None:
    """Run the bundled GBG GO simulator (receiver/testing/simulator.py: its control surface)."""
    from receiver.testing.module import WebhookModule
    from receiver.testing.simulator import Simulator

    sim = Simulator(
        client_id=client_id,
        client_secret=client_secret,
        token_lifetime=token_lifetime,
        webhook=WebhookModule(
            url=webhook_url,
            username=webhook_username,
            password=webhook_password,
            api_key=webhook_api_key,
            api_key_header=webhook_api_key_header,
        ),
    )
    server = sim.server(host, port)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    click.echo(f"GBG simulator on http://{host}:{server.server_port}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


for command in instances.COMMANDS:
    main.add_command(command)


def _exit_cleanly(_signum: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt
