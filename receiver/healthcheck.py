"""The container image's health check, per role: ``python -m receiver.healthcheck [ROLE]``.

Without ROLE it reads the role from the container's first process (``gbg-receiver web``
and so on). web: ``/readyz`` answers 200. poller: the worker's scheduler touched its
heartbeat file within HEARTBEAT_STALE seconds. serve: both. Anything else (``migrate``)
runs once and has nothing to watch.

The file lives in the runtime directory systemd gives the unit ($RUNTIME_DIRECTORY),
else in the temporary directory (the container's own).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from receiver.config import Settings

HEARTBEAT = (
    Path(os.environ.get("RUNTIME_DIRECTORY") or tempfile.gettempdir())
    / "gbg-receiver-worker.heartbeat"
)
HEARTBEAT_STALE = 30.0  # seconds without a touch before the worker counts as stuck
log = logging.getLogger("receiver.worker")
_unwritable: list[str] = []  # said once per process, not at every heartbeat


def touch() -> None:
    """Touch the heartbeat file; a file that cannot be written is said once."""
    try:
        HEARTBEAT.touch()
    except OSError as exc:
        if not _unwritable:
            _unwritable.append(str(HEARTBEAT))
            log.warning(
                "worker.heartbeat_file_unwritable",
                extra={"path": str(HEARTBEAT), "error": exc.strerror},
            )


def healthy(role: str) -> bool:
    if role == "serve":  # web and worker as children of one process
        return healthy("web") and healthy("poller")
    if role == "web":
        host, _, port = Settings.from_env().bind.rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]")  # noqa: S104
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False
    if role == "poller":
        try:
            return time.time() - HEARTBEAT.stat().st_mtime < HEARTBEAT_STALE
        except OSError:
            return False
    return True


def _role_of_first_process() -> str:
    args = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    return next((a.decode() for a in args if a in (b"web", b"poller", b"serve")), "other")


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else _role_of_first_process()
    sys.exit(0 if healthy(role) else 1)
