"""What every command builds on: settings and services."""

from __future__ import annotations

import logging

from receiver.config import Settings
from receiver.log import configure_logging
from receiver.services import Services, build_services


def settings() -> Settings:
    return Settings.from_env()


def web_settings() -> Settings:
    found = settings()
    found.check_web()
    return found


def services(*, quiet: bool = False) -> Services:
    """The services, logging on stderr; ``quiet`` (an operator's command, whose result is
    its output): warnings and errors only."""
    found = settings()
    configure_logging(found)
    if quiet:
        logging.getLogger().setLevel(logging.WARNING)
    return build_services(found)
