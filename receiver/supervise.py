"""``gbg-receiver serve``: its children (web, worker, the simulator) and their supervision."""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from types import FrameType
from urllib.parse import urlsplit

import click

from receiver.config import Settings

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


def supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Start every child; stop all on SIGTERM/SIGINT; if one dies, stop the rest, exit 1."""
    procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}  # noqa: S603
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("serve.stopping", extra={"signal": signal.Signals(signum).name})

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                log.error(
                    "serve.child_exited", extra={"child": name, "returncode": proc.returncode}
                )
                click.echo(f"gbg-receiver serve: {name} exited with {proc.returncode}", err=True)
                stopping, code = True, 1
                break
        time.sleep(0.2)
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
