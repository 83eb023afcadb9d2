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
    if any(p in value.lower() for p in _PLACEHOLDERS) or len(set(value)) < 8:
        return f"is a placeholder, not a secret; {hint}"
    if len(value) < MIN_SECRET:
        return f"is shorter than {MIN_SECRET} characters; {hint}"
    return None


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
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
