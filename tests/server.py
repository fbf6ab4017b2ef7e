"""A real ``dockyard serve`` process on 127.0.0.1 for the tests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.backends import backend_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegistryServer:
    """Starts, kills and restarts one registry process on a fixed port and data folder."""

    def __init__(self, data_dir: Path, port: int | None = None, log_path: Path | None = None, *,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 tls: bool | None = None, ca: Path | None = None) -> None:
        """``extra_args``/``env`` go to ``dockyard serve``. It speaks HTTPS when ``tls`` says so (by
        default: when ``--tls`` or ``--tls-cert`` is among the arguments), and the probe trusts ``ca``
        (by default the local CA the server makes in its data folder)."""
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.log_path = log_path or self.data_dir.parent / f"dockyard-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.extra_args = list(extra_args or [])
        self.extra_env = dict(env or {})
        self.tls = tls if tls is not None else ("--tls" in self.extra_args or "--tls-cert" in self.extra_args)
        self.ca = Path(ca) if ca else self.data_dir / "tls" / "ca.crt"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the server's CA and nothing else, as a client configured for it would."""
        return ssl.create_default_context(cafile=str(self.ca))

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify=`` for this server."""
        return self.ssl_context() if self.tls else True

    def start(self, timeout: float = 30) -> RegistryServer:
        # The backend under test (tests/backends.py) first, so that a test's own settings win.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **backend_env(self.data_dir), **self.extra_env}
        # The registry protocol tests run an open registry unless a test asks for access control.
        env.setdefault("DOCKYARD_AUTH", "none")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "serve",
             "--port", str(self.port), "--data-dir", str(self.data_dir), *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockyard exited with {self.proc.returncode}; see {self.log_path}")
            try:
                # 200, or 401 when token authentication is on: either way the API answers.
                if httpx.get(self.url + "/v2/", timeout=1, verify=self.verify).status_code in (200, 401):
                    return self
            except (httpx.HTTPError, FileNotFoundError):  # with TLS, the CA may not be written yet
                pass
            time.sleep(0.05)
        raise RuntimeError(f"dockyard did not start in {timeout}s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: the crash case, nothing gets to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait: the graceful case."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def restart(self) -> RegistryServer:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
