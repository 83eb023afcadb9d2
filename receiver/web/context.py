"""What a view reaches for: the services the app was built with."""

from __future__ import annotations

from flask import current_app

from receiver.services import Services


def services() -> Services:
    built: Services = current_app.extensions["receiver"]
    return built
