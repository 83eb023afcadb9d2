"""A real nginx with deploy/nginx/gbg-receiver.conf in front of a real gunicorn, on
loopback ports: the fixture and the client the proxy tests share."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from tests.processes import Proc, base_env, free_port, run, start_web

SITE = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "gbg-receiver.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLIENT = "127.0.0.2"  # the "internet" client: another loopback address than nginx's own


@pytest.fixture
def nginx(tmp_path: Path, procs: list[Proc]):  # type: ignore[no-untyped-def]
    if not Path(NGINX).exists():
        if os.environ.get("CI"):
            pytest.fail("CI must provide nginx (.ci/run installs it)")
        pytest.skip("nginx is not installed")
    env = base_env(tmp_path, RECEIVER_TRUSTED_PROXIES="1")
    assert run(["migrate"], env).returncode == 0
    web, app = start_web(env, tmp_path / "web.log", procs)
    app_port = int(app.rsplit(":", 1)[1])
    # nginx cannot say where it listens: its two ports are picked here, just before it starts.
    https_port, http_port = free_port(), free_port()

    site, main = prepare(tmp_path, SITE.read_text(), app_port, https_port, http_port)
    # A limit a test can reach in a few requests; every other test stays below it.
    site.write_text(
        site.read_text()
        .replace("rate=100r/s;", "rate=1r/s;")
        .replace("burst=200 nodelay;", "burst=8 nodelay;")
    )
    check = subprocess.run(
        [NGINX, "-t", "-c", str(main)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    server = subprocess.Popen([NGINX, "-c", str(main), "-g", "daemon off;"])
    wait_listening(tmp_path, https_port, http_port)
    try:
        yield {
            "https": https_port,
            "http": http_port,
            "app": app_port,
            "web": web,
            "db": env["RECEIVER_DATABASE_URL"],
            "env": env,
            "logs": tmp_path,
        }
    finally:
        server.terminate()
        server.wait(10)


def through_nginx(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    client: str = CLIENT,
) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, context=context, source_address=(client, 0), timeout=10
    )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def prepare(
    tmp_path: Path, site: str, app_port: int, https_port: int, http_port: int
) -> tuple[Path, Path]:
    """What an operator edits in the shipped site, done for a test: the ports, a
    certificate made here, logs under ``tmp_path``; written as ``site.conf`` with an
    ``nginx.conf`` that includes it (answered: both paths)."""
    key, cert = str(tmp_path / "key.pem"), str(tmp_path / "cert.pem")
    make_cert = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost"
    subprocess.run(
        [*make_cert.split(), "-keyout", key, "-out", cert], check=True, capture_output=True
    )
    for old, new in {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{app_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:443 ssl;": f"listen [::1]:{https_port} ssl;",
        "listen [::]:80;": f"listen [::1]:{http_port};",
        "/etc/ssl/certs/receiver.example.com.pem": cert,
        "/etc/ssl/private/receiver.example.com.key": key,
        "/var/log/nginx/gbg-receiver.access.log": str(tmp_path / "site-access.log"),
    }.items():
        assert old in site, f"deploy/nginx/gbg-receiver.conf no longer has {old!r}"
        site = site.replace(old, new)  # every occurrence
    (tmp_path / "site.conf").write_text(site)
    temp = "\n".join(
        f"  {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (tmp_path / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "nginx-error.log"} warn;
events {{ worker_connections 256; }}
http {{
  access_log {tmp_path / "nginx-access.log"};
{temp}
  include {tmp_path / "site.conf"};
}}
""")
    return tmp_path / "site.conf", tmp_path / "nginx.conf"


def wait_listening(tmp_path: Path, *ports: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, (tmp_path / "nginx-error.log").read_text()
            time.sleep(0.05)
