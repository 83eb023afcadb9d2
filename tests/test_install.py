"""deploy/README.md's install lines, run as written in a copy of the repository: the
locked runtime dependencies (PostgreSQL's driver included), then the package."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[1]


def guide_pip_lines() -> list[str]:
    text = (ROOT / "deploy" / "README.md").read_text()
    install = text.split("## 1. Install", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```sh\n(.*?)```", install, re.S)[:1]
    return [
        line.split("#")[0].strip()
        for line in block.splitlines()
        if line.startswith(".venv/bin/pip")
    ]


def test_the_guides_install_lines_give_a_service_that_runs_on_postgresql(tmp_path: Path) -> None:
    lines = guide_pip_lines()
    assert lines == [
        ".venv/bin/pip install --require-hashes -r requirements/runtime.txt",
        ".venv/bin/pip install --no-deps .",
    ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    release = tmp_path / "gbg-receiver"
    for name in tracked:  # the release as unpacked: the repository's files, nothing built
        if (ROOT / name).is_file():
            (release / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, release / name)
    subprocess.run([sys.executable, "-m", "venv", ".venv"], cwd=release, check=True)
    for line in lines:
        done = subprocess.run(
            line.split(), cwd=release, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
    python = release / ".venv" / "bin" / "python"
    driver = subprocess.run(
        [str(python), "-c", "import psycopg, receiver.store.engine; print(psycopg.__version__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert driver.returncode == 0, driver.stderr
    version = subprocess.run(
        [str(release / ".venv" / "bin" / "gbg-receiver"), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert version.returncode == 0
    assert "gbg-receiver" in version.stdout
