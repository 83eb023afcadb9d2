"""`systemctl` for the guide's walk (tests/test_guide.py), where no systemd runs: it
starts a unit as its file says, for the parts the guide relies on.

[Service]'s User and Group, EnvironmentFile (systemd's KEY=VALUE format), UMask,
WorkingDirectory, RuntimeDirectory and StateDirectory (created, owned by the user, and
named to the process in RUNTIME_DIRECTORY / STATE_DIRECTORY), ExecStartPre (must
succeed), ExecStart (in the background), ExecReload ($MAINPID), KillSignal and
TimeoutStopSec. Paths in the unit are moved under the walk's prefix (GUIDE_MAP, JSON).
`nginx` is the test's own nginx (GUIDE_NGINX: its main configuration).

Usage: fakesystemd.py daemon-reload | enable --now U... | start|stop|restart|reload U...
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

PATHS: dict[str, str] = json.loads(os.environ["GUIDE_MAP"])
PREFIX = Path(os.environ["GUIDE_PREFIX"])
STATE = PREFIX / "fake-systemd"


def moved(text: str) -> str:
    for old, new in PATHS.items():
        text = text.replace(old, new)
    return text


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(moved((Path(moved("/etc/systemd/system")) / f"{name}.service").read_text()))
    return parser["Service"]


def environment(service: configparser.SectionProxy) -> dict[str, str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for line in Path(service["EnvironmentFile"]).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key.strip()] = value
    return env


def as_user(service: configparser.SectionProxy) -> dict[str, object]:
    user = pwd.getpwnam(service["User"])
    umask = int(service.get("UMask", "0022"), 8)

    def become() -> None:
        os.setsid()
        os.initgroups(user.pw_name, user.pw_gid)
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
        os.umask(umask)

    return {"preexec_fn": become, "cwd": service.get("WorkingDirectory", "/")}


def start(name: str) -> None:
    service = unit(name)
    user = pwd.getpwnam(service["User"])
    env = environment(service)
    for kind, variable in (
        ("RuntimeDirectory", "RUNTIME_DIRECTORY"),
        ("StateDirectory", "STATE_DIRECTORY"),
    ):
        if kind in service:
            base = "/run" if kind == "RuntimeDirectory" else "/var/lib"
            directory = Path(moved(f"{base}/{service[kind]}"))
            directory.mkdir(parents=True, exist_ok=True, mode=0o755)
            os.chown(directory, user.pw_uid, user.pw_gid)
            env[variable] = str(directory)
    STATE.mkdir(exist_ok=True)
    log = (STATE / f"{name}.log").open("ab")
    if "ExecStartPre" in service:
        done = subprocess.run(
            shlex.split(service["ExecStartPre"]),
            env=env,
            stdout=log,
            stderr=log,
            **as_user(service),
        )
        if done.returncode:
            sys.exit(f"{name}: ExecStartPre failed ({done.returncode}); see {log.name}")
    process = subprocess.Popen(
        shlex.split(service["ExecStart"]), env=env, stdout=log, stderr=log, **as_user(service)
    )
    (STATE / f"{name}.pid").write_text(str(process.pid))


def main_pid(name: str) -> int | None:
    try:
        pid = int((STATE / f"{name}.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop(name: str) -> None:
    pid = main_pid(name)
    if pid is None:
        return
    service = unit(name)
    os.kill(pid, getattr(signal, service.get("KillSignal", "SIGTERM")))
    deadline = time.monotonic() + float(service.get("TimeoutStopSec", "90"))
    while main_pid(name) is not None and _alive(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    (STATE / f"{name}.pid").unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # not our child: another systemctl's
        os.waitpid(pid, os.WNOHANG)
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def reload(name: str) -> None:
    if name == "nginx":
        nginx = [os.environ["GUIDE_NGINX_BIN"], "-c", os.environ["GUIDE_NGINX"]]
        if main_pid("nginx") is None:
            STATE.mkdir(exist_ok=True)
            log = (STATE / "nginx.log").open("ab")
            process = subprocess.Popen(
                [*nginx, "-g", "daemon off;"], stdout=log, stderr=log, start_new_session=True
            )
            (STATE / "nginx.pid").write_text(str(process.pid))
        else:
            subprocess.run([*nginx, "-s", "reload"], check=True)
        return
    pid = main_pid(name)
    assert pid is not None, f"{name} is not running"
    command = unit(name)["ExecReload"].replace("$MAINPID", str(pid))
    subprocess.run(shlex.split(command), check=True)


def main(args: list[str]) -> None:
    verb, names = args[0], [a for a in args[1:] if not a.startswith("--")]
    if verb == "daemon-reload":
        return
    for name in (n.removesuffix(".service") for n in names):
        if verb == "enable":
            if "--now" in args:
                start(name)
        elif verb == "start":
            start(name)
        elif verb == "stop":
            stop(name)
        elif verb == "restart":
            stop(name)
            start(name)
        elif verb == "reload":
            reload(name)
        else:
            sys.exit(f"fakesystemd: {verb} is not among what the guide uses")


if __name__ == "__main__":
    main(sys.argv[1:])
