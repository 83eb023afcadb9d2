"""The package alone: a plain (non-editable) wheel, installed from the locked runtime
dependencies into a fresh virtualenv, runs the service with no source tree in sight."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.processes import Proc, base_env, start_web

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_from_the_lock_file_migrates_and_serves(
    tmp_path: Path, procs: list[Proc]
) -> None:
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [str(a) for a in args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, ROOT)
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    lock = ROOT / "requirements" / "runtime.txt"
    run(python, "-m", "pip", "install", "-q", "--require-hashes", "-r", lock)
    (wheel,) = dist.glob("gbg_receiver-*.whl")
    run(python, "-m", "pip", "install", "-q", "--no-deps", wheel)

    # The installed package, not this checkout, is what runs.
    where = run(python, "-c", "import receiver; print(receiver.__file__)")
    assert where.startswith(str(venv)), where
    env = base_env(elsewhere)
    env.pop("PYTHONPATH", None)
    assert "schema is up to date" in run(venv / "bin" / "gbg-receiver", "migrate", env=env)
    web, base = start_web(env, tmp_path / "web.log", procs, python=str(python), cwd=elsewhere)
    # The wheel carries the dashboard's templates and static files.
    for path, expected in (
        ("/dashboard/signin", b"API token"),
        ("/dashboard/static/dashboard.js", b"refresh"),
    ):
        with urllib.request.urlopen(base + path, timeout=10) as answer:
            assert expected in answer.read()
    assert web.stop() == 0
