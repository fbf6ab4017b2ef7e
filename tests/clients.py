"""Running real container clients (skopeo, podman, docker) against the test registry.

``Podman`` gives podman its own storage, runtime settings and registries.conf through the
CONTAINERS_* environment variables, so neither the podman CLI nor ``podman system service``
(which the docker CLI talks to) touches the machine's own images or containers.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.backends import end_process
from tests.images import busybox_rootfs, is_static_elf
from tests.server import RegistryServer

# Generous: a slow CI machine pulls and unpacks images under vfs, which copies every layer.
CLIENT_TIMEOUT = 300
# Lines left out of the log tail shown on failure: aiohttp repeats this warning for every
# connection while the server passes it a handler argument it does not take.
_LOG_NOISE = ("Failed to create request handler with custom kwargs",)


def require(binary: str) -> str:
    """The binary's path, or skip the test when the client is not installed at all."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed (./dev test installs the container clients from Debian)")
    return path


def registry_log_tail(registry: RegistryServer | None, lines: int = 60) -> str:
    if registry is None:
        return ""
    kept = [line for line in registry.log().splitlines() if not any(n in line for n in _LOG_NOISE)]
    return "\n".join(kept[-lines:])


def run(args: list[str], *, env: dict[str, str] | None = None, registry: RegistryServer | None = None,
        timeout: float = CLIENT_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a client; on failure, fail the test with its output and the registry's log tail."""
    try:
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{shlex.join(args)} did not finish in {timeout}s\nstdout:\n{exc.stdout}\n"
                    f"stderr:\n{exc.stderr}\nregistry log:\n{registry_log_tail(registry)}")
    if check and result.returncode != 0:
        pytest.fail(f"{shlex.join(args)} exited {result.returncode}\nstdout:\n{result.stdout}\n"
                    f"stderr:\n{result.stderr}\nregistry log:\n{registry_log_tail(registry)}")
    return result


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


class Podman:
    """Podman with storage, configuration and a Docker-compatible socket under ``base``."""

    def __init__(self, base: Path, registry: RegistryServer, *, insecure: bool = True) -> None:
        """By default registries.conf marks the registry insecure (plain HTTP, or TLS unverified);
        ``insecure=False`` makes podman verify its TLS certificate like any registry's."""
        self.base = base
        self.registry = registry
        self.podman = require("podman")
        self.root = base / "root"
        self.runroot = base / "runroot"
        self.socket = base / "podman.sock"
        self.service: subprocess.Popen | None = None
        self.isolated = False
        for folder in (self.root, self.runroot, base / "tmp", base / "docker-config"):
            folder.mkdir(parents=True, exist_ok=True)
        (base / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = {_toml_str(self.root)}\n'
            f"runroot = {_toml_str(self.runroot)}\n"
        )
        # runc with cgroupfs is what works as root here (and what ./dev puts in the system
        # containers.conf); containers get no network, which these tests never need.
        engine = ['cgroup_manager = "cgroupfs"', 'events_logger = "file"',
                  f"tmp_dir = {_toml_str(base / 'tmp')}"]
        if shutil.which("runc"):
            engine.insert(0, 'runtime = "runc"')
        (base / "containers.conf").write_text(
            '[containers]\nnetns = "none"\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
            "[engine]\n" + "\n".join(engine) + "\n"
        )
        (base / "registries.conf").write_text(
            f"unqualified-search-registries = []\n\n[[registry]]\nlocation = {_toml_str(registry.host)}\n"
            f"insecure = {'true' if insecure else 'false'}\n"
        )
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(base / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(base / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
        }
        self.docker_env = {
            **self.env,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(base / "docker-config"),  # no credentials or contexts of the machine's
        }
        self.docker_env.pop("DOCKER_CONTEXT", None)
        self.docker_env.pop("DOCKER_TLS_VERIFY", None)
        self.docker_env.pop("DOCKER_CERT_PATH", None)

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return run([self.podman, *args], env=self.env, registry=self.registry, check=check, timeout=timeout)

    def docker(self, *args: str, check: bool = True,
               timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess[str]:
        docker = require("docker")
        return run([docker, *args], env=self.docker_env, registry=self.registry, check=check, timeout=timeout)

    def check_isolated(self) -> None:
        """Refuse to go on if podman would use the machine's own storage."""
        info = json.loads(self("info", "--format", "json").stdout)
        assert info["store"]["graphRoot"] == str(self.root), info["store"]
        assert info["store"]["graphDriverName"] == "vfs", info["store"]
        self.isolated = True

    # -- the Docker-compatible API ------------------------------------------------------------

    def start_service(self, timeout: float = 60) -> None:
        log = open(self.base / "podman-service.log", "ab")  # noqa: SIM115 - owned by the process
        self.service = subprocess.Popen(
            [self.podman, "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise RuntimeError(f"podman system service exited with {self.service.returncode}:\n"
                                   f"{self.service_log()}")
            if self.socket.exists() and self.docker("version", check=False, timeout=30).returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"podman system service did not answer in {timeout}s:\n{self.service_log()}")

    def stop_service(self) -> None:
        end_process(self.service, signal.SIGTERM, 30)
        self.service = None

    def service_log(self) -> str:
        path = self.base / "podman-service.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # -- teardown -----------------------------------------------------------------------------

    def cleanup(self) -> None:
        self.stop_service()
        if self.isolated:  # never "rm --all" the machine's own storage
            self("rm", "--all", "--force", check=False, timeout=120)
            self("rmi", "--all", "--force", check=False, timeout=120)
        shutil.rmtree(self.base, ignore_errors=True)


def static_busybox() -> Path:
    """Debian's static busybox: the one binary a runnable test image needs (no registry to pull
    a base image from here). Skips, with the reason, where it is missing."""
    busybox = Path(shutil.which("busybox") or "/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox is not installed (./dev test installs Debian's busybox-static)")
    if not is_static_elf(busybox):
        pytest.skip(f"{busybox} is not statically linked: install Debian's busybox-static")
    return busybox


def make_rootfs(folder: Path, busybox: Path) -> tuple[Path, str]:
    """A busybox rootfs tarball and the random token it carries in /etc/dockyard-token (which
    also makes each one's layer new to the registry and to the clients' blob caches)."""
    token = secrets.token_hex(16)
    path = folder / f"rootfs-{token}.tar"
    path.write_bytes(busybox_rootfs(busybox, {"etc/dockyard-token": token.encode()}))
    return path, token
