"""The WSGI entry point: ``gunicorn receiver.web.wsgi:app`` (``gbg-receiver web`` runs exactly
that, with ``receiver.web.gunicorn_conf``). Importing it reads the environment: it is meant to
be imported by a WSGI server, once per worker, and by nothing else."""

import sys

from receiver.config import Settings
from receiver.log import configure_logging
from receiver.web import create_app

settings = Settings.from_env()
configure_logging(settings, stream=sys.stdout)
app = create_app(settings)
