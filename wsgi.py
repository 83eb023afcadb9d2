"""The WSGI entry point: ``gunicorn wsgi:app`` (``gbg-receiver web`` does exactly that)."""

import sys

from receiver import create_app
from receiver.config import Settings
from receiver.log import configure_logging

settings = Settings.from_env()
configure_logging(settings, stream=sys.stdout)
app = create_app(settings)
