"""The metrics directory that the web workers and the worker of one host count into.

prometheus-client keeps each process's counters and histograms in files named by the
process, summed at scrape time. A process that is gone leaves its files: they must stay
counted (deleting them would make the sums go backwards, which Prometheus reads as a
reset), but kept one per process they pile up with every restart. So the files of this
host's processes that are gone are folded into one archive file per kind, under a lock
that scrapes share, so that no scrape sees a value twice or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOST = socket.gethostname()  # asked once: prometheus-client asks for the id at every count
_KINDS = ("counter", "histogram")  # gauges are read from the store, not kept in files


def process_id(pid: int | None = None) -> str:
    """This process's name among all that count into one metrics directory."""
    return f"{HOST}-{os.getpid() if pid is None else pid}"


def prepare(directory: str) -> None:
    """Create the directory, and fold in what processes that are gone left there."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    merge_gone(directory)


def worker_exited(directory: str, pid: int) -> None:
    """gunicorn's child_exit hook: the worker's live gauges go, its counts are folded."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(process_id(pid), directory)  # type: ignore[no-untyped-call]
    merge_gone(directory)


@contextlib.contextmanager
def reading(directory: str) -> Iterator[None]:
    """Hold while summing the files: a merge waits until the scrape has read them."""
    with _lock(directory, fcntl.LOCK_SH):
        yield


def merge_gone(directory: str) -> int:
    """Fold the files of this host's processes that are gone into the archive of their
    kind; answer how many files were folded."""
    from prometheus_client import mmap_dict

    mmaped: Any = mmap_dict.MmapedDict  # prometheus-client's file format, untyped
    folded = 0
    with _lock(directory, fcntl.LOCK_EX):
        for kind in _KINDS:
            gone = [p for p in Path(directory).glob(f"{kind}_{HOST}-*.db") if _gone(p)]
            if not gone:
                continue
            archive = Path(directory) / f"{kind}_{HOST}-archive.db"
            totals: dict[str, float] = defaultdict(float)
            for path in [archive, *gone] if archive.exists() else gone:
                for key, value, _, _ in mmaped.read_all_values_from_file(str(path)):
                    totals[key] += value
            draft = Path(directory) / f".{kind}-archive.draft"  # not *.db: never summed
            written = mmaped(str(draft))
            for key, value in totals.items():
                written.write_value(key, value, 0.0)
            written.close()
            os.replace(draft, archive)
            for path in gone:
                path.unlink()
            folded += len(gone)
    return folded


def _gone(path: Path) -> bool:
    pid = path.stem.rsplit("-", 1)[-1]
    if not pid.isdigit():
        return False  # the archive itself
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


@contextlib.contextmanager
def _lock(directory: str, how: int) -> Iterator[None]:
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)
