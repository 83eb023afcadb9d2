"""The web workers' line to the host's one inbox writer.

With every web worker appending its own deliveries, each commit served only its own
threads' webhooks; on SQLite five processes queued for one file lock, and its write
lock was held by a thread waiting for its interpreter. So gunicorn runs one writer
process per host (``receiver.web.inboxwriter``): a worker sends it the delivery over a
unix socket, the writer commits every delivery that came in meanwhile in one statement,
and answers each sender after the commit. The 202 still follows the commit.

When the writer cannot be reached, is gone mid-way, or could not commit, the worker
writes the delivery itself, as it did before the writer. A delivery the writer did
commit without its answer arriving is then in the inbox twice, as when GBG sends it
twice.

The frame: lengths of the metadata (JSON) and of the body, the metadata, the body. The
answer: one byte per delivery, in order.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading

from receiver.store.inbox import Delivery

log = logging.getLogger("receiver.inbox")

HEAD = struct.Struct("!II")
COMMITTED, NOT_COMMITTED = b"+", b"-"
MAX_FRAME = 64 * 1024 * 1024  # past this a sender is not one of ours: its line is cut
REPLY_TIMEOUT = 10.0  # seconds: like the group commit's wait, then the worker writes itself


def frame(delivery: Delivery) -> bytes:
    d = delivery
    meta = json.dumps([d.instance_id, d.received_at, d.headers, d.peer, d.claim]).encode()
    return HEAD.pack(len(meta), len(d.body)) + meta + d.body


def unframe(buffer: bytearray) -> list[Delivery]:
    """The whole frames at the start of ``buffer``, removed from it; ValueError if it
    does not hold frames."""
    out: list[Delivery] = []
    while len(buffer) >= HEAD.size:
        meta_len, body_len = HEAD.unpack_from(buffer)
        end = HEAD.size + meta_len + body_len
        if end > MAX_FRAME:
            raise ValueError("frame too large")
        if len(buffer) < end:
            break
        instance_id, received_at, headers, peer, claim = json.loads(
            bytes(buffer[HEAD.size : HEAD.size + meta_len])
        )
        body = bytes(buffer[HEAD.size + meta_len : end])
        out.append(Delivery(instance_id, received_at, body, headers, peer, claim))
        del buffer[:end]
    return out


class InboxLink:
    """A web worker's side: one connection per thread, made when first needed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._lines: set[socket.socket] = set()  # every thread's, for close()
        self._reached = True  # for one log line per change, not one per webhook

    def append(self, delivery: Delivery) -> bool:
        """True once the writer has committed the delivery; False: write it yourself."""
        data = frame(delivery)
        try:
            sock = self._line()
            try:
                sock.sendall(data)
            except OSError:  # a line to a writer since restarted: it got nothing, so again
                self._drop(sock)
                sock = self._line()
                sock.sendall(data)
            answer = sock.recv(1)
        except OSError as exc:
            answer = type(exc).__name__.encode()
        if answer == COMMITTED:
            self._say(reached=True, cause="")
            return True
        self._drop(getattr(self._local, "sock", None))
        said = {NOT_COMMITTED: "not committed", b"": "closed"}.get(answer, answer.decode())
        self._say(reached=False, cause=said)
        return False

    def close(self) -> None:
        for sock in list(self._lines):
            self._drop(sock)

    def _line(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._lines.add(sock)
            self._local.sock = sock
            sock.settimeout(REPLY_TIMEOUT)
            sock.connect(self.path)
        return sock

    def _drop(self, sock: socket.socket | None) -> None:
        if sock is not None:
            self._lines.discard(sock)
            sock.close()
        self._local.sock = None

    def _say(self, *, reached: bool, cause: str) -> None:
        if reached == self._reached:
            return
        self._reached = reached
        if reached:
            log.info("inbox.writer_reached", extra={"socket": self.path})
        else:
            log.warning(
                "inbox.writer_unreachable",
                extra={"socket": self.path, "cause": cause, "detail": "writing here instead"},
            )
