"""``gunicorn wsgi:app`` from a checkout: a thin shim over the packaged entry point."""

from receiver.wsgi import app

__all__ = ["app"]
