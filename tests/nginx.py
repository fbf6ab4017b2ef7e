"""nginx in front of dockyard replicas: the repository's example configuration, run for real.

``render_nginx`` turns ``deploy/nginx/dockyard.conf`` into a runnable configuration (the test's
loopback ports instead of the example's addresses, every file nginx writes under one folder, the
foreground), so what the tests and the benchmark put behind nginx is the file users copy, not a
configuration of their own. Used by tests/test_deploy.py, tests/test_replicas.py and
bench/compare.py (``--against replicas``).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.clients import require

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx" / "dockyard.conf"


def render_nginx(
    prefix: Path, listen: int, upstreams: list[int], *, worker_processes: int | str = 1, access_log: bool = True
) -> Path:
    """deploy/nginx/dockyard.conf with the test's ports, inside a main configuration that keeps
    every file nginx writes under ``prefix`` and runs in the foreground. The benchmark turns the
    access log off and lets nginx use every core, as a production proxy would."""
    site = NGINX_CONF.read_text()
    servers = re.findall(r"^\s*server 10\.0\.0\.\d+:5000 .*;$", site, flags=re.M)
    assert len(servers) == 3, "the example's upstream changed: update this test"
    options = servers[0].split(":5000", 1)[1]
    replaced = "\n".join(f"    server 127.0.0.1:{port}{options}" for port in upstreams)
    site = site.replace("\n".join(servers), replaced)
    assert "listen 80;" in site
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "dockyard.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    access = f"access_log {prefix / 'logs' / 'access.log'};" if access_log else "access_log off;"
    main = f"""
daemon off;
user root;
worker_processes {worker_processes};
pid {prefix / "nginx.pid"};
error_log {prefix / "logs" / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    {access}
{temp}
    include {prefix / "dockyard.conf"};
}}
"""
    conf = prefix / "nginx.conf"
    conf.write_text(main)
    return conf


def nginx_args(conf: Path) -> list[str]:
    """The command line that runs ``conf`` (``-p`` and ``-e`` keep nginx out of /var/log and /run)."""
    return [require("nginx"), "-p", str(conf.parent), "-e", str(conf.parent / "logs" / "error.log"), "-c", str(conf)]


class Nginx:
    """One nginx master (and its workers) this process started; ``stop`` ends exactly that one."""

    def __init__(self, conf: Path, port: int) -> None:
        self.conf, self.port = conf, port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        log = open(self.conf.parent / "logs" / "stdout.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(nginx_args(self.conf), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.conf.parent / "logs" / "error.log").read_text()
            try:
                if httpx.get(self.url + "/v2/", timeout=2).status_code in (200, 401):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
