"""``gbg-receiver serve``: its children (web, worker, the simulator) and their supervision."""

from __future__ import annotations

import logging
import subprocess
import time
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import click

from receiver.config import Settings
from receiver.guards import DEMO_SECRETS
from receiver.stopsignals import StopSignals

log = logging.getLogger("receiver.cli")


def simulator_options(settings: Settings) -> list[str]:
    """The simulator's command line: GBG as the receiver is configured to reach it."""
    url = urlsplit(settings.gbg_url)
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        raise click.ClickException(
            "RECEIVER_GBG_BASE_URL: --simulator serves GBG on this machine: "
            f"it must be http://127.0.0.1:PORT, not {settings.gbg_url}"
        )
    return [
        "--port",
        str(url.port),
        "--client-id",
        settings.gbg_client_id or "",
        "--client-secret",
        settings.gbg_client_secret or "",
        "--webhook-url",
        f"http://{settings.bind}/webhooks/gbg",
        *_webhook_credentials(settings),
    ]


def _webhook_credentials(settings: Settings) -> list[str]:
    if settings.webhook_username is not None:
        return [
            "--webhook-username",
            settings.webhook_username,
            "--webhook-password",
            settings.webhook_password or "",
        ]
    if settings.webhook_api_key is not None:
        return [
            "--webhook-api-key",
            settings.webhook_api_key,
            "--webhook-api-key-header",
            settings.webhook_api_key_header,
        ]
    return []


def greeting(settings: Settings, with_simulator: bool) -> Callable[[], bool]:
    """A check that, once the web answers /readyz, says where to go next (once: True)."""
    if settings.bind.startswith("unix:"):
        return lambda: True
    base = f"http://{settings.bind}"
    tokens = settings.api_tokens
    demo = tokens[0] if tokens and tokens[0] in DEMO_SECRETS else None  # published anyway

    def greet() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=0.5) as answer:  # noqa: S310
                answer.read()
        except OSError:
            return False
        token = demo or "an API token (RECEIVER_API_TOKENS)"
        lines = [
            f"gbg-receiver is ready on {base}",
            f"  dashboard:  {base}/dashboard/  (sign in with {token})",
            f"  API:        {base}/api/v1/  (the same token, as a bearer token)",
        ]
        if with_simulator:
            lines.append(f"  GBG:        the bundled simulator at {settings.gbg_url}")
        if with_simulator and demo:
            lines += [
                "  next:       start a journey and end it in the browser:",
                f"              curl -s -X POST {base}/api/v1/journeys -H 'Authorization: "
                f"Bearer {demo}' -H 'Content-Type: application/json' "
                """-d '{"resourceId": "age-check@latest"}'""",
            ]
        elif with_simulator:
            lines.append(
                "  next:       the README's 'Try it': start a journey, end it in the browser"
            )
        click.echo("\n".join(lines), err=True)
        return True

    return greet


def supervise(
    commands: dict[str, list[str]], env: dict[str, str], ready: Callable[[], bool] = lambda: True
) -> int:
    """Start every child; stop all on SIGTERM/SIGINT; if one dies, stop the rest, exit 1.
    ``ready`` is asked on each look until it answers True (the greeting)."""
    with StopSignals() as stops:
        # Each child in a session of its own: a Ctrl-C in the terminal reaches this process
        # alone, which stops them in order (SIGTERM), not all at once mid-way.
        procs = {
            name: subprocess.Popen(cmd, env=env, start_new_session=True)  # noqa: S603
            for name, cmd in commands.items()
        }
        code, greeted = 0, False
        while not (exited := _exited(procs)) and not (received := stops.wait(0.2)):
            greeted = greeted or ready()
        if exited:
            name, returncode = exited
            log.error("serve.child_exited", extra={"child": name, "returncode": returncode})
            click.echo(f"gbg-receiver serve: {name} exited with {returncode}", err=True)
            code = 1
        else:
            log.info("serve.stopping", extra={"signal": received})
        for proc in reversed(procs.values()):  # web and poller first, the simulator last
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 40
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return code


def _exited(procs: dict[str, subprocess.Popen[bytes]]) -> tuple[str, int] | None:
    """The first child that has exited, and its return code."""
    for name, proc in procs.items():
        if (returncode := proc.poll()) is not None:
            return name, returncode
    return None
