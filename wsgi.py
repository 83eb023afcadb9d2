"""``gunicorn wsgi:app`` from a checkout: a thin shim over the packaged entry point."""

from receiver.web.wsgi import app

__all__ = ["app"]
