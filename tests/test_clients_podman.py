"""podman, and the docker CLI through podman's Docker-compatible socket, against dockyard.

The image is made here, with no outside registry: a rootfs tarball of Debian's static busybox
(package busybox-static) plus a random token file, imported with ``podman import``. It is
pushed, removed locally, pulled back and run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients import Podman, make_rootfs, require, static_busybox
from tests.images import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    sha256,
)
from tests.server import RegistryServer

pytestmark = [pytest.mark.clients, pytest.mark.core]

MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST])


@pytest.fixture(scope="module")
def podman(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    require("podman")
    env = Podman(tmp_path_factory.mktemp("podman"), registry)
    try:
        env.check_isolated()
        yield env
    finally:
        env.cleanup()


@pytest.fixture(scope="module")
def busybox() -> Path:
    return static_busybox()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory, busybox: Path) -> tuple[Path, str]:
    return make_rootfs(tmp_path_factory.mktemp("rootfs"), busybox)


def manifest_of(registry: RegistryServer, name: str, reference: str) -> httpx.Response:
    response = httpx.get(f"{registry.url}/v2/{name}/manifests/{reference}",
                         headers={"Accept": MANIFEST_ACCEPT}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == sha256(response.content)
    return response


def test_podman_push_rmi_pull_run(podman, registry, rootfs):
    tarball, token = rootfs
    image = f"{registry.host}/team/podman/busybox:1"
    podman("import", str(tarball), image)
    try:
        digest_file = podman.base / "podman-push.digest"
        podman("push", "--tls-verify=false", "--digestfile", str(digest_file), image)
        digest = digest_file.read_text().strip()
        served = manifest_of(registry, "team/podman/busybox", "1")
        assert served.headers["Docker-Content-Digest"] == digest
        assert served.headers["Content-Type"] == OCI_MANIFEST  # podman's default push format

        podman("rmi", image)
        assert podman("image", "exists", image, check=False).returncode == 1

        podman("pull", "--tls-verify=false", image)
        assert podman("image", "inspect", "--format", "{{.Digest}}", image).stdout.strip() == digest

        hello = podman("run", "--rm", image, "/bin/busybox", "echo", "hello")
        assert hello.stdout == "hello\n"
        assert podman("run", "--rm", image, "/bin/cat", "/etc/dockyard-token").stdout == token
        assert podman("ps", "--all", "--quiet").stdout.strip() == ""
    finally:
        podman("rmi", "--force", image, check=False)


def test_podman_docker_schema2_by_digest(podman, registry, rootfs):
    """Pushed as Docker schema 2, pulled back by digest, and run."""
    tarball, token = rootfs
    image = f"{registry.host}/team/podman/busybox-v2s2:1"
    podman("import", str(tarball), image)
    pinned = None
    try:
        digest_file = podman.base / "v2s2.digest"
        podman("push", "--tls-verify=false", "--format", "v2s2", "--digestfile", str(digest_file), image)
        digest = digest_file.read_text().strip()
        served = manifest_of(registry, "team/podman/busybox-v2s2", digest)
        assert served.headers["Content-Type"] == DOCKER_MANIFEST
        assert json.loads(served.content)["mediaType"] == DOCKER_MANIFEST

        podman("rmi", image)
        pinned = f"{registry.host}/team/podman/busybox-v2s2@{digest}"
        podman("pull", "--tls-verify=false", pinned)
        assert podman("image", "inspect", "--format", "{{.Digest}}", pinned).stdout.strip() == digest
        assert podman("run", "--rm", pinned, "/bin/cat", "/etc/dockyard-token").stdout == token
    finally:
        podman("rmi", "--force", image, check=False)
        if pinned:
            podman("rmi", "--force", pinned, check=False)


def test_podman_manifest_list_push_all_pull_by_platform(podman, registry, busybox, tmp_path):
    """A two-platform list made by ``podman manifest``, pushed with --all; a pull picks the
    instance for the platform asked for (both are amd64 busybox underneath, told apart by token)."""
    amd64_tar, amd64_token = make_rootfs(tmp_path, busybox)
    arm64_tar, arm64_token = make_rootfs(tmp_path, busybox)
    local_list = "localhost/dockyard-test/multi:1"
    locals_ = ["localhost/dockyard-test/multi-amd64:1", "localhost/dockyard-test/multi-arm64:1"]
    image = f"{registry.host}/team/podman/multi:1"
    podman("import", str(amd64_tar), locals_[0])
    podman("import", str(arm64_tar), locals_[1])
    podman("manifest", "create", local_list)
    try:
        podman("manifest", "add", local_list, f"containers-storage:{locals_[0]}")
        podman("manifest", "add", "--arch", "arm64", "--variant", "v8", local_list,
               f"containers-storage:{locals_[1]}")
        digest_file = tmp_path / "list.digest"
        podman("manifest", "push", "--all", "--tls-verify=false", "--digestfile", str(digest_file),
               local_list, f"docker://{image}")
        digest = digest_file.read_text().strip()

        response = httpx.get(f"{registry.url}/v2/team/podman/multi/manifests/1",
                             headers={"Accept": f"{OCI_INDEX}, {DOCKER_MANIFEST_LIST}"}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["Docker-Content-Digest"] == digest == sha256(response.content)
        assert response.headers["Content-Type"] in (OCI_INDEX, DOCKER_MANIFEST_LIST)
        entries = json.loads(response.content)["manifests"]
        platforms = {e["platform"]["architecture"]: e["digest"] for e in entries}
        assert set(platforms) == {"amd64", "arm64"}

        for arch, token in (("amd64", amd64_token), ("arm64", arm64_token)):
            podman("pull", "--tls-verify=false", "--arch", arch, image)
            inspected = podman("image", "inspect", "--format", "{{json .RepoDigests}}", image)
            repo_digests = json.loads(inspected.stdout)
            assert f"{registry.host}/team/podman/multi@{platforms[arch]}" in repo_digests
            assert podman("run", "--rm", image, "/bin/cat", "/etc/dockyard-token").stdout == token
            podman("rmi", image)
    finally:
        podman("manifest", "rm", local_list, check=False)
        podman("rmi", "--force", image, *locals_, check=False)


@pytest.fixture(scope="module")
def docker_socket(podman: Podman) -> Iterator[None]:
    """podman's Docker-compatible API on a socket of the test's own; stopped at teardown."""
    require("docker")
    podman.start_service()
    try:
        yield
    finally:
        podman.stop_service()


@pytest.mark.usefixtures("docker_socket")
def test_docker_cli_tag_push_rmi_pull(podman, registry, rootfs):
    docker = podman.docker  # the docker CLI, with DOCKER_HOST on the podman service's socket
    tarball, token = rootfs
    local = "localhost/dockyard-test/busybox:src"
    image = f"{registry.host}/team/docker/busybox:1"
    podman("import", str(tarball), local)  # same storage as the service
    try:
        docker("tag", local, image)
        pushed = docker("push", image)
        match = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed.stdout)
        assert match, pushed.stdout
        digest = match[1]
        served = manifest_of(registry, "team/docker/busybox", "1")
        assert served.headers["Docker-Content-Digest"] == digest

        docker("rmi", image, local)
        images = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert image not in images and local not in images

        docker("pull", image)
        inspected = json.loads(docker("image", "inspect", image).stdout)[0]
        assert f"{registry.host}/team/docker/busybox@{digest}" in inspected["RepoDigests"]
        assert docker("run", "--rm", image, "/bin/busybox", "echo", "hello").stdout == "hello\n"
        assert docker("run", "--rm", image, "/bin/cat", "/etc/dockyard-token").stdout == token
    finally:
        podman("rmi", "--force", image, local, check=False)
