"""skopeo against dockyard: OCI layouts made in Python go in and come back byte for byte.

Each test makes fresh random content (the seed is printed), so skopeo's machine-wide blob-info
cache never remembers these digests from an earlier run and every blob really travels.
"""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path

import httpx
import pytest

from tests.clients import require, run
from tests.images import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    ImageIndex,
    Layout,
    random_image,
    random_index,
    read_layout,
    sha256,
    write_layout,
)
from tests.server import RegistryServer

pytestmark = [pytest.mark.clients, pytest.mark.core]

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"


@pytest.fixture
def rng() -> random.Random:
    seed = secrets.randbits(32)
    print(f"random seed {seed}")
    return random.Random(seed)


@pytest.fixture
def skopeo(registry: RegistryServer):
    binary = require("skopeo")

    def call(*args: str, check: bool = True):
        # The tests' own images carry no signatures; no policy file of the machine's is needed.
        return run([binary, "--insecure-policy", *args], registry=registry, check=check)

    return call


def assert_image_in_layout(layout: Layout, descriptor: dict, image: Image) -> None:
    """``descriptor`` (an index.json entry) names ``image``, and every byte of it is there."""
    assert descriptor["digest"] == image.digest
    assert descriptor["mediaType"] == OCI_MANIFEST
    assert descriptor["size"] == image.manifest.size
    assert layout.blob(image.digest) == image.manifest.data
    for blob in image.blobs:
        assert layout.blob(blob.digest) == blob.data, f"{blob.media_type} {blob.digest} differs"


def assert_index_in_layout(layout: Layout, descriptor: dict, index: ImageIndex) -> None:
    assert descriptor["digest"] == index.digest
    assert descriptor["mediaType"] == OCI_INDEX
    assert layout.blob(index.digest) == index.manifest.data
    for image in index.images:
        assert_image_in_layout(layout, image.manifest.descriptor(), image)


def test_skopeo_roundtrip_by_tag_and_digest(registry, skopeo, rng, tmp_path):
    # Several layers, one of about 3 MiB so that blob uploads are more than one read buffer.
    image = random_image(rng, layers=4, big_layer=3 << 20)
    source = write_layout(tmp_path / "source", "v1", image)
    ref = f"docker://{registry.host}/team/app/api"

    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{source}:v1", f"{ref}:v1")

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{ref}:v1").stdout.encode()
    assert raw == image.manifest.data

    by_tag = tmp_path / "by-tag"
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", f"{ref}:v1", f"oci:{by_tag}:v1")
    layout = read_layout(by_tag)
    assert_image_in_layout(layout, layout.descriptor("v1"), image)

    by_digest = tmp_path / "by-digest"
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", f"{ref}@{image.digest}",
           f"oci:{by_digest}")
    layout = read_layout(by_digest)
    assert_image_in_layout(layout, layout.descriptor(), image)


def test_skopeo_push_by_digest_has_no_tag(registry, skopeo, rng, tmp_path):
    image = random_image(rng, layers=3)
    source = write_layout(tmp_path / "source", "v1", image)
    ref = f"docker://{registry.host}/team/app/pinned-{secrets.token_hex(4)}"

    skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", f"oci:{source}:v1",
           f"{ref}@{image.digest}")

    listed = json.loads(skopeo("list-tags", "--tls-verify=false", ref).stdout)
    assert listed["Tags"] == []
    back = tmp_path / "back"
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", f"{ref}@{image.digest}",
           f"oci:{back}:pinned")
    layout = read_layout(back)
    assert_image_in_layout(layout, layout.descriptor("pinned"), image)


def test_skopeo_inspect_and_list_tags(registry, skopeo, rng, tmp_path):
    image = random_image(rng, layers=3)
    source = write_layout(tmp_path / "source", "v1", image)
    name = f"team/app/inspected-{secrets.token_hex(4)}"  # its tag list is checked whole
    ref = f"docker://{registry.host}/{name}"
    for tag in ("v1", "v1.0", "latest"):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{source}:v1", f"{ref}:{tag}")

    info = json.loads(skopeo("inspect", "--tls-verify=false", f"{ref}:v1").stdout)
    assert info["Name"] == f"{registry.host}/{name}"
    assert info["Digest"] == image.digest
    assert info["Layers"] == [layer.digest for layer in image.layers]
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    assert sorted(info["RepoTags"]) == ["latest", "v1", "v1.0"]

    config = json.loads(skopeo("inspect", "--config", "--raw", "--tls-verify=false", f"{ref}:v1").stdout)
    assert config == json.loads(image.config.data)

    listed = json.loads(skopeo("list-tags", "--tls-verify=false", ref).stdout)
    assert sorted(listed["Tags"]) == ["latest", "v1", "v1.0"]

    missing = skopeo("inspect", "--tls-verify=false", f"{ref}:nope", check=False)
    assert missing.returncode != 0
    assert "manifest unknown" in missing.stderr.lower(), missing.stderr


def test_skopeo_multi_arch_index_with_all(registry, skopeo, rng, tmp_path):
    index = random_index(rng)  # linux/amd64 and linux/arm64
    amd64, arm64 = index.images
    source = write_layout(tmp_path / "source", "v1", index)
    ref = f"docker://{registry.host}/team/app/multi"

    skopeo("copy", "--all", "--preserve-digests", "--dest-tls-verify=false", f"oci:{source}:v1", f"{ref}:v1")

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{ref}:v1").stdout.encode()
    assert raw == index.manifest.data
    for image in index.images:
        raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{ref}@{image.digest}").stdout.encode()
        assert raw == image.manifest.data
    for image, arch in ((amd64, "amd64"), (arm64, "arm64")):
        out = skopeo("--override-arch", arch, "inspect", "--tls-verify=false", f"{ref}:v1").stdout
        info = json.loads(out)
        assert info["Digest"] == index.digest
        assert info["Architecture"] == arch
        assert info["Layers"] == [layer.digest for layer in image.layers]

    back = tmp_path / "back"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"{ref}:v1", f"oci:{back}:v1")
    layout = read_layout(back)
    assert_index_in_layout(layout, layout.descriptor("v1"), index)

    by_digest = tmp_path / "by-digest"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"{ref}@{index.digest}",
           f"oci:{by_digest}")
    layout = read_layout(by_digest)
    assert_index_in_layout(layout, layout.descriptor(), index)

    # Without --all, skopeo picks one platform's image out of the index.
    single = tmp_path / "single"
    skopeo("--override-arch", "arm64", "copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{single}:arm")
    layout = read_layout(single)
    assert_image_in_layout(layout, layout.descriptor("arm"), arm64)


def test_skopeo_docker_schema2_and_cross_repository_copy(registry, skopeo, rng, tmp_path):
    """Converted to Docker schema 2 on the way in; copied registry to registry (blob mounts)."""
    image = random_image(rng, layers=3)
    source = write_layout(tmp_path / "source", "v1", image)
    ref = f"docker://{registry.host}/team/app/docker"
    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{source}:v1", f"{ref}:v1")

    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"{ref}:v1").stdout.encode()
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert manifest["config"]["digest"] == image.config.digest
    assert [layer["digest"] for layer in manifest["layers"]] == [layer.digest for layer in image.layers]
    served = httpx.get(f"{registry.url}/v2/team/app/docker/manifests/v1", headers={"Accept": DOCKER_MANIFEST})
    assert served.status_code == 200
    assert served.headers["Content-Type"] == DOCKER_MANIFEST
    assert served.headers["Docker-Content-Digest"] == sha256(raw)

    # The same registry on both sides: skopeo mounts the blobs from the source repository.
    copy = f"docker://{registry.host}/team/app/docker-copy"
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"{ref}:v1", f"{copy}:v1")
    assert skopeo("inspect", "--raw", "--tls-verify=false", f"{copy}:v1").stdout.encode() == raw

    out = tmp_path / "dir"
    skopeo("copy", "--preserve-digests", "--src-tls-verify=false", f"{copy}:v1", f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == raw
    for blob in image.blobs:
        assert (out / blob.digest.removeprefix("sha256:")).read_bytes() == blob.data


def test_skopeo_delete(registry, skopeo, rng, tmp_path):
    image = random_image(rng, layers=2)
    source = write_layout(tmp_path / "source", "v1", image)
    ref = f"docker://{registry.host}/team/app/doomed"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{source}:v1", f"{ref}:v1")

    skopeo("delete", "--tls-verify=false", f"{ref}:v1")  # resolves the tag, deletes by digest

    gone = httpx.get(f"{registry.url}/v2/team/app/doomed/manifests/{image.digest}",
                     headers={"Accept": OCI_MANIFEST})
    assert gone.status_code == 404
    assert gone.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert skopeo("inspect", "--tls-verify=false", f"{ref}:v1", check=False).returncode != 0


def test_helpers_layout_is_valid(tmp_path: Path, rng):
    """The layout writer itself: what skopeo reads is a well-formed OCI layout."""
    index = random_index(rng)
    layout = read_layout(write_layout(tmp_path / "l", "t", index))
    assert_index_in_layout(layout, layout.descriptor("t"), index)
