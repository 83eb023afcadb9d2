"""What every command builds on: the environment file, settings and services."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from sqlalchemy.engine import make_url

from receiver.config import Settings
from receiver.errors import ConfigError
from receiver.log import configure_logging
from receiver.services import Services, build_services


def load_env_file(path: str) -> None:
    """Set the variables of a systemd EnvironmentFile (``KEY=VALUE`` lines, ``#`` and
    ``;`` comments, values optionally quoted), over the environment: a command then sees
    what the service sees."""
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip().isidentifier():
            raise ConfigError([f"{path}:{number}: not a KEY=VALUE line"])
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ[key.strip()] = value


def settings() -> Settings:
    found = Settings.from_env()
    _check_sqlite_owner(found)
    return found


def _sqlite_file(found: Settings) -> Path | None:
    url = make_url(found.database_url)
    name = url.database
    return (
        Path(name)
        if url.get_backend_name() == "sqlite" and name not in (None, "", ":memory:")
        else None
    )


def _check_sqlite_owner(found: Settings) -> None:
    """Root must not touch the service's SQLite store: files it creates beside it (the
    writer lock, the journal) would be root's, and the service could write no more."""
    path = _sqlite_file(found)
    if os.geteuid() != 0 or path is None or not path.exists() or path.stat().st_uid == 0:
        return
    raise ConfigError(
        [
            f"RECEIVER_DATABASE_URL: {path} belongs to uid {path.stat().st_uid}; run this "
            "command as that user (runuser -u gbg-receiver -- gbg-receiver ...), not as root"
        ]
    )


def existing_store(found: Settings) -> None:
    """An operator's command works on a store that exists: a SQLite file that is not
    there means the wrong RECEIVER_DATABASE_URL (or none), not a new empty store."""
    path = _sqlite_file(found)
    if path is not None and not path.exists():
        raise ConfigError(
            [
                f"RECEIVER_DATABASE_URL: there is no store at {path}; set the service's "
                "(gbg-receiver --env-file /etc/gbg-receiver/env ...), or create one with "
                "gbg-receiver migrate"
            ]
        )


def web_settings() -> Settings:
    found = settings()
    found.check_web()
    return found


def services(*, quiet: bool = False, counts: bool = False) -> Services:
    """The services, logging on stderr; ``quiet`` (an operator's command, whose result is
    its output): warnings and errors only. Only a long-running process (``counts``, the
    poller) counts into RECEIVER_METRICS_DIR: a command's files would pile up there."""
    found = settings()
    if quiet:
        existing_store(found)
    configure_logging(found)
    if quiet:
        logging.getLogger().setLevel(logging.WARNING)
    return build_services(found if counts else replace(found, metrics_dir=None))
