"""Request bodies: streamed within the size limit, parsed as one JSON object."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from receiver import strictjson
from receiver.errors import Problem

DRAIN_LIMIT = 16 * 1024 * 1024  # bytes of an oversized body read and dropped, at most


def werkzeug_limit(limit: int) -> int:
    """What to give Werkzeug as ``max_content_length`` for a body limit of ``limit``.

    Werkzeug stops a chunked body at ``max_content_length`` without an error, so it is
    set one byte above the limit: ``read_body`` refuses a body that reaches it, and so
    tells "exactly the limit" from "more".
    """
    return limit + 1


def read_body(request: Request) -> bytes:
    """The request body, streamed and never buffered past the limit (``werkzeug_limit``
    of it set on the request or the app); 413 beyond it."""
    limit = (request.max_content_length or 1) - 1
    declared = request.content_length or 0
    environ = request.environ
    if declared > limit:
        body = b""
    elif declared and environ.get("wsgi.input_terminated"):  # the server ends the body
        body = environ["wsgi.input"].read(declared)  # at its length: no stream wrapped
    else:
        body = request.get_data(cache=False)
    if max(declared, len(body)) > limit:
        _discard_rest(environ["wsgi.input"])
        raise Problem("body-too-large", f"the body is larger than {limit} bytes")
    return body


def _discard_rest(stream: Any) -> None:
    """Read what the sender is still sending (up to a bound), so it sees our 413.

    Closing on a client that is still writing makes it fail with a broken pipe before
    it reads the answer; past DRAIN_LIMIT the connection is closed all the same.
    """
    left = DRAIN_LIMIT
    while left > 0:
        chunk = stream.read(min(65536, left))
        if not chunk:
            return
        left -= len(chunk)


def parse_object(body: bytes, *, nul: bool = False) -> dict[str, Any]:
    """The body as a JSON object, or a 400/422 problem; a NUL character in it is one
    too, unless ``nul`` (the caller checks each string it keeps)."""
    try:
        payload = strictjson.loads(body, nul=nul)
    except strictjson.OutOfRange as exc:
        raise Problem("unprocessable-body", str(exc)) from None
    except (ValueError, RecursionError):
        raise Problem("malformed-body", "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise Problem("unprocessable-body", "the body must be a JSON object")
    return payload
