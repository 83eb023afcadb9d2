"""gunicorn settings for gbg-receiver, all derived from RECEIVER_* variables."""

from receiver.config import Settings

_settings = Settings.from_env()

bind = _settings.bind
workers = _settings.web_workers
# Threads keep a slow client from pinning a whole worker; the work per request is short.
worker_class = "gthread"
threads = 4
timeout = 30
graceful_timeout = 30  # SIGTERM: in-flight requests finish and commit first
keepalive = 5
# The app's ProxyFix alone decides what forwarded headers to believe, for exactly
# RECEIVER_TRUSTED_PROXIES hops; gunicorn itself believes none of them.
forwarded_allow_ips = ""
proxy_allow_ips = ""
accesslog = None
errorlog = "-"
# gunicorn's control socket lives at one path per user; two services would fight over it.
control_socket_disable = True
