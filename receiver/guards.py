"""What our own secrets and the URLs we send secrets to must be, checked at start-up."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import urllib.parse

_WHSEC = "import base64,secrets; print('whsec_'+base64.b64encode(secrets.token_bytes(32)).decode())"

MIN_SECRET = 24  # characters: about 140 bits from a random alphabet of 64
_PLACEHOLDERS = ("change", "replace", "example", "placeholder", "your-", "your_", "<")


def weak_secret(value: str) -> str | None:
    """Why ``value`` may not guard this service (None: it may). A secret of ours must be
    long and not a placeholder copied from an example; GBG chooses GBG's own."""
    hint = "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if any(p in value.lower() for p in _PLACEHOLDERS):
        return f"is a placeholder, not a secret; {hint}"
    if len(value) < MIN_SECRET:
        return f"is shorter than {MIN_SECRET} characters; {hint}"
    if len(set(value)) < 8:
        return f"has fewer than 8 different characters, no random secret; {hint}"
    return None


# The values deploy/demo.env publishes (a test keeps the two alike): anyone who has read
# the README knows them, so they guard only a demo that nobody else can reach.
DEMO_SECRETS = frozenset(
    {
        "demo-password-for-make-run-only",
        "demo-token-for-make-run-only",
        "demo-simulator-secret-for-make-run-only",
    }
)


def demo_values(secrets: dict[str, tuple[str | None, ...]], gbg_url: str, bind: str) -> list[str]:
    """A refusal for each setting (``secrets``: name less RECEIVER_, values) that holds a
    published demo value, unless GBG and the bind are both on loopback: a demo."""
    if loopback(gbg_url) and loopback_bind(bind):
        return []
    return [
        f"RECEIVER_{name}: is a published demo value (deploy/demo.env), only for a demo with "
        f"GBG and RECEIVER_BIND on loopback (GBG is {gbg_url}, the bind {bind}); set a "
        "secret of your own"
        for name, values in secrets.items()
        if DEMO_SECRETS.intersection(values)
    ]


def not_whsec(secret: str) -> str | None:
    """Why ``secret`` is no Standard Webhooks signing key of 24 random bytes or more."""
    hint = f"make one: python3 -c {_WHSEC!r}"
    body = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith("whsec_") or len(key) < MIN_SECRET or len(set(key)) < 8:
        return f"must be whsec_ and the base64 of {MIN_SECRET} random bytes or more; {hint}"
    return None


def loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine."""
    return loopback_host(urllib.parse.urlsplit(url).hostname or "")


def loopback_bind(bind: str) -> bool:
    """Whether a gunicorn bind (HOST:PORT, [V6]:PORT or unix:PATH) is reachable only from
    this machine."""
    if bind.startswith("unix:"):
        return True
    return loopback_host(bind.rpartition(":")[0].strip("[]"))


def loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
