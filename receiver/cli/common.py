"""What every command builds on: settings, services, printing."""

from __future__ import annotations

import json
from typing import Any

import click

from receiver.config import Settings
from receiver.log import configure_logging
from receiver.services import Services, build_services


def settings() -> Settings:
    return Settings.from_env()


def web_settings() -> Settings:
    found = settings()
    found.check_web()
    return found


def services() -> Services:
    found = settings()
    configure_logging(found)
    return build_services(found)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
