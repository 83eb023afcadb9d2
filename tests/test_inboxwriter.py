"""The host's one inbox writer (SQLite): frames, one commit for every worker's
deliveries, and a worker that writes itself whenever the writer cannot help."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from receiver import metrics
from receiver.errors import StoreUnavailable
from receiver.migrations import upgrade
from receiver.store import Database, Delivery, Store, inboxlink
from receiver.store.inboxlink import HEAD, frame, unframe
from receiver.store.schema import deliveries
from receiver.web.inboxwriter import InboxWriter, WriterProcess
from tests.processes import Proc, base_env, post_webhook, run, start_web, wait_for


def delivery(instance_id: str, body: bytes = b'{"instanceId":"x"}') -> Delivery:
    headers = {"Content-Type": "application/json", "User-Agent": "GBG"}
    return Delivery(instance_id, 1000.25, body, headers, "10.0.0.7", "Completed")


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory: a unix socket's path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="gbg-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Recording(Store):
    """A store that remembers each batch the writer committed."""

    batches: list[list[str]]

    def append_deliveries(self, batch: list[Delivery]) -> None:
        super().append_deliveries(batch)
        self.batches.append([d.instance_id for d in batch])


def recording(store: Store) -> Recording:
    own = Recording(store.db)
    own.batches = []
    return own


def listening(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    return listener


def accepted_lines(serving: InboxWriter, path: str, count: int) -> list[socket.socket]:
    """``count`` worker lines to the writer at ``path``, each accepted (one per step)."""
    lines = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(count)]
    for sock in lines:
        sock.connect(path)
    while len(serving._buffers) < count:
        serving.step(1.0)
    return lines


@pytest.fixture
def writer(store: Store, socket_dir: Path) -> Iterator[tuple[InboxWriter, Recording, str]]:
    """A writer with its own store on the same database, serving in a thread."""
    own = recording(store)
    path = str(socket_dir / "inbox.sock")
    serving = InboxWriter(own, listening(path), metrics.start(None))
    yield serving, own, path
    serving.close()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def stored(store: Store) -> list[tuple[str, bytes, str | None]]:
    query = sa.select(deliveries.c.instance_id, deliveries.c.body, deliveries.c.claim)
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(deliveries.c.id))]  # type: ignore[misc]


@contextlib.contextmanager
def web_store(serving: InboxWriter, store: Store, path: str) -> Iterator[Store]:
    """A web worker's store on ``path`` while ``serving`` serves in a thread."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            serving.step(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    web = Store(store.db, inbox_socket=path)
    try:
        yield web
    finally:
        stop.set()
        thread.join()
        web.close()


def test_frames_come_back_whole_however_the_bytes_arrive() -> None:
    sent = [
        delivery("a-1"),
        delivery("b-2", body=b"\x00\xff binary"),
        Delivery("c", 1.0, b"", {}, None, None),
    ]
    wire = b"".join(frame(d) for d in sent)
    buffer, got = bytearray(), []
    for i in range(len(wire)):  # one byte at a time
        buffer += wire[i : i + 1]
        got += unframe(buffer)
    assert got == sent
    assert buffer == bytearray()


def test_a_frame_larger_than_any_delivery_cuts_the_line() -> None:
    buffer = bytearray(HEAD.pack(10, inboxlink.MAX_FRAME))
    with pytest.raises(ValueError, match="frame too large"):
        unframe(buffer)


def test_the_writer_commits_every_connected_workers_deliveries_in_one_statement(
    writer: tuple[InboxWriter, Recording, str], store: Store
) -> None:
    serving, own, path = writer
    workers = accepted_lines(serving, path, 2)
    workers[0].sendall(frame(delivery("w1-a")) + frame(delivery("w1-b")))
    workers[1].sendall(frame(delivery("w2-a")))
    commits = counted("gbg_receiver_inbox_writer_commits_total")
    committed = counted("gbg_receiver_inbox_writer_deliveries_total", outcome="committed")
    assert serving.step(1.0) == 3
    assert counted("gbg_receiver_inbox_writer_commits_total") == commits + 1
    assert (
        counted("gbg_receiver_inbox_writer_deliveries_total", outcome="committed") == committed + 3
    )
    assert own.batches == [["w1-a", "w1-b", "w2-a"]]
    assert workers[0].recv(2) == b"++"
    assert workers[1].recv(1) == b"+"
    for sock in workers:
        sock.close()
    assert [row[0] for row in stored(store)] == ["w1-a", "w1-b", "w2-a"]
    assert stored(store)[0][1:] == (b'{"instanceId":"x"}', "Completed")


def test_a_store_with_a_writer_hands_it_each_delivery(
    writer: tuple[InboxWriter, Recording, str], store: Store
) -> None:
    serving, own, path = writer
    with web_store(serving, store, path) as web:
        threads = [
            threading.Thread(target=web.append_delivery, args=(delivery(f"t-{n}"),))
            for n in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(i for batch in own.batches for i in batch) == [f"t-{n}" for n in range(8)]
    assert sorted(row[0] for row in stored(store)) == [f"t-{n}" for n in range(8)]


def test_with_no_writer_listening_the_worker_writes_itself_and_says_so_once(
    store: Store, socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    web = Store(store.db, inbox_socket=str(socket_dir / "nobody.sock"))
    web.append_delivery(delivery("alone-1"))
    web.append_delivery(delivery("alone-2"))
    web.close()
    assert [row[0] for row in stored(store)] == ["alone-1", "alone-2"]
    lines = [r for r in caplog.records if r.getMessage() == "inbox.writer_unreachable"]
    assert len(lines) == 1
    assert lines[0].cause == "FileNotFoundError"  # type: ignore[attr-defined]
    assert lines[0].levelname == "WARNING"


def test_when_the_writer_cannot_commit_each_worker_writes_its_own(
    writer: tuple[InboxWriter, Recording, str],
    store: Store,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO)
    serving, own, path = writer

    def down(batch: list[Delivery]) -> None:
        raise StoreUnavailable("disk I/O error")

    monkeypatch.setattr(own, "append_deliveries", down)
    refused = counted("gbg_receiver_inbox_writer_deliveries_total", outcome="not_committed")
    with web_store(serving, store, path) as web:
        web.append_delivery(delivery("refused-1"))
    assert [row[0] for row in stored(store)] == ["refused-1"]
    assert (
        counted("gbg_receiver_inbox_writer_deliveries_total", outcome="not_committed")
        == refused + 1
    )
    lines = [r for r in caplog.records if r.getMessage() == "inbox_writer.not_committed"]
    assert [(r.cause, r.count) for r in lines] == [("disk I/O error", 1)]  # type: ignore[attr-defined]
    warned = [r for r in caplog.records if r.getMessage() == "inbox.writer_unreachable"]
    assert [r.cause for r in warned] == ["not committed"]  # type: ignore[attr-defined]


def test_a_writer_gone_before_it_answered_leaves_the_worker_to_write(
    store: Store, socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = str(socket_dir / "inbox.sock")
    listener = listening(path)

    def read_then_die() -> None:
        conn, _ = listener.accept()
        conn.recv(1 << 16)
        conn.close()  # as a writer killed mid-commit: no answer

    thread = threading.Thread(target=read_then_die, daemon=True)
    thread.start()
    web = Store(store.db, inbox_socket=path)
    web.append_delivery(delivery("orphan-1"))
    web.close()
    thread.join()
    listener.close()
    assert [row[0] for row in stored(store)] == ["orphan-1"]
    warned = [r for r in caplog.records if r.getMessage() == "inbox.writer_unreachable"]
    assert [r.cause for r in warned] == ["closed"]  # type: ignore[attr-defined]


def test_the_worker_goes_back_to_the_writer_once_it_answers_again(
    writer: tuple[InboxWriter, Recording, str],
    store: Store,
    socket_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    serving, own, path = writer
    moved = str(socket_dir / "away.sock")
    os.rename(path, moved)  # the writer cannot be found for a moment
    with web_store(serving, store, path) as web:
        web.append_delivery(delivery("meanwhile"))
        os.rename(moved, path)
        web.append_delivery(delivery("through-the-writer"))
    assert own.batches == [["through-the-writer"]]
    assert [r.getMessage() for r in caplog.records if r.name == "receiver.inbox"] == [
        "inbox.writer_unreachable",
        "inbox.writer_reached",
    ]


def test_a_line_sending_garbage_is_cut_and_the_others_are_served(
    writer: tuple[InboxWriter, Recording, str], store: Store
) -> None:
    serving, _, path = writer
    bad, good = accepted_lines(serving, path, 2)
    bad.sendall(HEAD.pack(3, 0) + b"{{{")
    good.sendall(frame(delivery("fine")))
    assert serving.step(1.0) == 1
    assert good.recv(1) == b"+"
    assert bad.recv(1) == b""  # closed by the writer
    assert len(serving._buffers) == 1
    bad.close()
    good.close()
    assert [row[0] for row in stored(store)] == ["fine"]


@pytest.fixture
def env_for_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'receiver.db'}"
    engine = sa.create_engine(url)
    upgrade(engine)
    engine.dispose()
    for name in [n for n in os.environ if n.startswith("RECEIVER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RECEIVER_DATABASE_URL", url)
    return url


def test_a_wake_socket_ends_the_writers_wait_at_once(store: Store, socket_dir: Path) -> None:
    """The writer process passes its StopSignals: a stop ends a wait of any length."""
    ring, wake = socket.socketpair()
    listener = listening(str(socket_dir / "inbox.sock"))
    serving = InboxWriter(store, listener, metrics.start(None), wake=wake)
    answered: list[int] = []
    waiting = threading.Thread(target=lambda: answered.append(serving.step(None)), daemon=True)
    waiting.start()
    ring.send(b"\x0f")
    waiting.join(10)
    assert answered == [0]  # woken, nothing to answer; the byte is left for its owner
    assert wake.recv(1) == b"\x0f"
    serving.close()
    ring.close()
    wake.close()


@contextlib.contextmanager
def lingering(
    store: Store, socket_dir: Path, lines: int, **pace: float
) -> Iterator[tuple[InboxWriter, Recording, list[socket.socket], socket.socket]]:
    """A writer with ``pace`` (linger, busy), ``lines`` worker lines it has accepted,
    and the ringing end of its wake socket."""
    own = recording(store)
    path = str(socket_dir / "inbox.sock")
    ring, wake = socket.socketpair()
    serving = InboxWriter(own, listening(path), metrics.start(None), wake=wake, **pace)
    workers = accepted_lines(serving, path, lines)
    try:
        yield serving, own, workers, ring
    finally:
        for sock in [*workers, ring, wake]:
            sock.close()
        serving.close()
        Path(path).unlink()


def stepping(serving: InboxWriter) -> tuple[threading.Thread, list[int]]:
    """One ``step`` running in a thread, and where its answer will be."""
    answered: list[int] = []
    thread = threading.Thread(target=lambda: answered.append(serving.step(10.0)), daemon=True)
    thread.start()
    return thread, answered


def test_while_busy_the_writer_waits_for_every_line_before_it_commits(
    store: Store, socket_dir: Path
) -> None:
    with lingering(store, socket_dir, 2, linger=60.0, busy=60.0) as (serving, own, workers, _):
        workers[0].sendall(frame(delivery("first")))
        assert serving.step(10.0) == 1  # nothing committed before: no one waits
        workers[0].sendall(frame(delivery("w0")))
        thread, answered = stepping(serving)
        threading.Event().wait(0.3)  # a writer that did not wait has committed w0 alone
        assert own.batches == [["first"]]
        workers[1].sendall(frame(delivery("w1")))  # the last line: no one else can send
        thread.join(10)
        assert answered == [2]
        assert own.batches == [["first"], ["w0", "w1"]]
        assert workers[0].recv(2) == b"++"
        assert workers[1].recv(1) == b"+"


@pytest.mark.parametrize(
    ("linger", "busy"),
    [(60.0, 0.0), (0.05, 60.0)],
    ids=["the last commit is never recent: no wait", "the wait ends at its linger"],
)
def test_a_writer_waits_for_more_only_while_commits_come_fast_and_not_for_long(
    store: Store, socket_dir: Path, linger: float, busy: float
) -> None:
    with lingering(store, socket_dir, 2, linger=linger, busy=busy) as (serving, own, workers, _):
        for name in ("a", "b"):  # one line of two sends: each delivery is committed alone
            workers[0].sendall(frame(delivery(name)))
            thread, answered = stepping(serving)
            thread.join(10)
            assert answered == [1]
        assert own.batches == [["a"], ["b"]]


def test_a_stop_ends_a_writers_wait_for_more(store: Store, socket_dir: Path) -> None:
    with lingering(store, socket_dir, 2, linger=60.0, busy=60.0) as (serving, own, workers, ring):
        workers[0].sendall(frame(delivery("c")))
        assert serving.step(10.0) == 1
        workers[0].sendall(frame(delivery("d")))
        thread, answered = stepping(serving)
        threading.Event().wait(0.3)
        ring.send(b"\x0f")  # a stop: commit what came, wait for nothing more
        thread.join(10)
        assert answered == [1]
        assert own.batches == [["c"], ["d"]]


def test_the_writer_process_starts_serves_restarts_and_stops(
    env_for_writer: str, socket_dir: Path
) -> None:
    path = str(socket_dir / "inbox.sock")
    process = WriterProcess(path)
    process.start()
    try:
        assert process.running()
        assert os.path.exists(path)
        store = Store.from_url(env_for_writer, inbox_socket=path)
        assert store._writer is not None
        assert store._writer.append(delivery("via-process"))
        first = process._proc.pid  # type: ignore[union-attr]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not process.running())
        process.revive()
        assert process.running()
        assert process._proc.pid != first  # type: ignore[union-attr]
        assert store._writer.append(delivery("after-restart"))  # a new line, made at once
    finally:
        process.stop()
    assert not process.running()
    assert not os.path.exists(path)
    process.revive()  # stopped on purpose: stays stopped
    assert not process.running()
    assert [row[0] for row in stored(store)] == ["via-process", "after-restart"]
    store.close()


def test_a_writer_that_dies_at_once_is_not_started_again_in_a_loop(
    env_for_writer: str, socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    process = WriterProcess(str(socket_dir / "no-such-dir" / "inbox.sock"))  # cannot bind
    process.start()
    wait_for(lambda: not process.running())
    process.revive()  # once more: it may have been killed by accident
    wait_for(lambda: not process.running())
    process.revive()
    assert not process.running()
    exited = [r for r in caplog.records if r.getMessage() == "inbox_writer.exited"]
    assert [r.restarted for r in exited] == [True, False]  # type: ignore[attr-defined]
    process.stop()


def writer_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"receiver.web.inboxwriter" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def metric(base: str, line: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = re.search("^" + re.escape(line) + r" (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.live
def test_gunicorn_on_sqlite_commits_through_its_writer_and_brings_it_back(
    tmp_path: Path, procs: list[Proc]
) -> None:
    env = base_env(tmp_path)
    assert run(["migrate"], env).returncode == 0
    web, base = start_web(env, tmp_path / "web.log", procs)
    [first] = writer_pids(web.popen.pid)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda n: post_webhook(base, f"live-{n}")[0], range(24)))
    assert codes == [202] * 24
    committed = 'gbg_receiver_inbox_writer_deliveries_total{outcome="committed"}'
    assert metric(base, committed) == 24
    assert 1 <= metric(base, "gbg_receiver_inbox_writer_commits_total") <= 24

    os.kill(first, signal.SIGKILL)  # webhooks go on: the workers write, then the new writer
    codes = [post_webhook(base, f"after-{n}")[0] for n in range(6)]
    assert codes == [202] * 6
    wait_for(lambda: len(writer_pids(web.popen.pid)) == 1)
    [second] = writer_pids(web.popen.pid)
    assert second != first
    later = iter(range(100))

    def through_the_second() -> bool:  # once it listens (a moment after its pid shows)
        assert post_webhook(base, f"later-{next(later)}")[0] == 202
        return metric(base, committed) > 24  # the second writer's, added to the first's

    wait_for(through_the_second)

    engine = sa.create_engine(env["RECEIVER_DATABASE_URL"])
    with engine.connect() as conn:
        ids = set(conn.execute(sa.select(deliveries.c.instance_id)).scalars())
    engine.dispose()
    sent_later = {f"later-{n}" for n in range(next(later))}
    assert ids == {f"live-{n}" for n in range(24)} | {f"after-{n}" for n in range(6)} | sent_later
    assert web.stop() == 0
    log = web.log.read_text()
    socket_path = re.findall(r'"event": "inbox_writer.started".*?"socket": "([^"]+)"', log)[-1]
    assert not os.path.exists(os.path.dirname(socket_path))  # the master cleaned up
    assert '"event": "inbox_writer.stopped"' in log
    with contextlib.suppress(ProcessLookupError):
        os.kill(second, 0)
        raise AssertionError("the writer outlived its master")


def test_a_held_cursor_keeps_one_connection_and_lets_it_go_after_an_error(
    database_url: str,
) -> None:
    db = Database.from_url(database_url, connections=2, hold=True)
    upgrade(db.engine)
    store = Store(db)
    store.append_deliveries([delivery("h-1")])
    held = db._held
    assert held is not None
    store.append_deliveries([delivery("h-2")])
    assert db._held is held  # no checkout of the pool for the second commit
    assert db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    with pytest.raises(db.engine.dialect.dbapi.IntegrityError):  # type: ignore[union-attr]
        store.append_deliveries([Delivery(None, 1.0, b"", {}, None, None)])  # type: ignore[arg-type]
    assert db._held is None
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    store.append_deliveries([delivery("h-3")])
    assert [row[0] for row in stored(store)] == ["h-1", "h-2", "h-3"]  # each one committed
    db.close()
    assert db._held is None
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_without_hold_each_cursor_goes_back_to_the_pool(store: Store) -> None:
    store.append_deliveries([delivery("p-1")])
    assert store.db._held is None
    assert store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
