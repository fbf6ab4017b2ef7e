"""Random OCI images, image indexes and OCI image layouts, made in Python for the client tests.

Nothing here talks to an outside registry: an image is a few gzip tarballs of random files, a
config that names their diff_ids, and a manifest; a multi-arch image adds an image index over
several such images. ``write_layout`` lays them out as an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256/...``) that ``skopeo copy oci:DIR:tag`` reads, and
``read_layout`` reads one back (skopeo's output) so tests can compare digests byte for byte.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests import oci

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"
EPOCH = "2024-01-01T00:00:00Z"


def sha256(data: bytes) -> str:
    return oci.digest(data)


def to_json(value: object) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: object) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Image:
    config: Blob
    layers: list[Blob]
    manifest: Blob
    platform: dict

    @property
    def blobs(self) -> list[Blob]:
        return [self.config, *self.layers]

    @property
    def digest(self) -> str:
        return self.manifest.digest


@dataclass(frozen=True)
class ImageIndex:
    images: list[Image]
    manifest: Blob

    @property
    def digest(self) -> str:
        return self.manifest.digest


# -- building ---------------------------------------------------------------------------------


def tar_bytes(files: dict[str, bytes], symlinks: dict[str, str] | None = None, mode: int = 0o644) -> bytes:
    """A reproducible tar: sorted entries, fixed owner and mtime, parent folders included."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folders = sorted({str(Path(p).parents[i]) for p in [*files, *(symlinks or {})]
                          for i in range(len(Path(p).parents) - 1)})
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(info)
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        for path, target in sorted((symlinks or {}).items()):
            info = tarfile.TarInfo(path)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 1_700_000_000
            tar.addfile(info)
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def random_layer(rng: random.Random, files: int = 3, max_size: int = 64 * 1024,
                 sizes: list[int] | None = None) -> tuple[Blob, str]:
    """A gzip tarball of random files (``files`` of up to ``max_size`` bytes, or exactly
    ``sizes``); returns the layer and its diff_id."""
    folder = f"data-{rng.randbytes(4).hex()}"
    sizes = sizes or [rng.randint(1, max_size) for _ in range(files)]
    contents = {f"{folder}/file-{i}-{rng.randbytes(3).hex()}.bin": rng.randbytes(size)
                for i, size in enumerate(sizes)}
    tar = tar_bytes(contents)
    return Blob(OCI_LAYER_GZIP, gzip_bytes(tar)), sha256(tar)


def image_from_layers(layers: list[tuple[Blob, str]], architecture: str = "amd64", os: str = "linux",
                      annotations: dict[str, str] | None = None, cmd: list[str] | None = None) -> Image:
    config = {
        "architecture": architecture,
        "os": os,
        "created": EPOCH,
        "config": {"Cmd": cmd or ["/bin/sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        "history": [{"created": EPOCH, "created_by": f"test layer {i}"} for i, _ in enumerate(layers)],
    }
    if architecture == "arm64":
        config["variant"] = "v8"
    config_blob = Blob(OCI_CONFIG, to_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer, _ in layers],
    }
    if annotations:
        manifest["annotations"] = annotations
    platform = {"architecture": architecture, "os": os}
    if architecture == "arm64":
        platform["variant"] = "v8"
    return Image(config_blob, [layer for layer, _ in layers], Blob(OCI_MANIFEST, to_json(manifest)), platform)


def random_image(rng: random.Random, layers: int = 3, architecture: str = "amd64", os: str = "linux",
                 big_layer: int = 0) -> Image:
    """An image of ``layers`` random layers; with ``big_layer`` bytes, one more layer of about
    that size (random data does not compress) so uploads cross chunk boundaries."""
    made = [random_layer(rng, files=rng.randint(2, 5)) for _ in range(layers)]
    if big_layer:
        made.append(random_layer(rng, sizes=[big_layer // 2, big_layer - big_layer // 2]))
    return image_from_layers(made, architecture, os, annotations={"org.opencontainers.image.title": "random"})


PLATFORMS = (("linux", "amd64"), ("linux", "arm64"))


def random_index(rng: random.Random, platforms: tuple[tuple[str, str], ...] = PLATFORMS,
                 layers: int = 2) -> ImageIndex:
    images = [random_image(rng, layers=layers, architecture=arch, os=os) for os, arch in platforms]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [image.manifest.descriptor(platform=image.platform) for image in images],
    }
    return ImageIndex(images, Blob(OCI_INDEX, to_json(index)))


# -- OCI image layouts ------------------------------------------------------------------------


def write_layout(path: Path, tag: str, target: Image | ImageIndex) -> Path:
    """Write ``target`` as an OCI image layout at ``path``, referenced by ``tag``."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    images = target.images if isinstance(target, ImageIndex) else [target]
    for blob in [target.manifest, *(b for image in images for b in [image.manifest, *image.blobs])]:
        (blobs / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    (path / "oci-layout").write_bytes(to_json({"imageLayoutVersion": "1.0.0"}))
    top = target.manifest.descriptor(annotations={REF_NAME: tag})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}
    (path / "index.json").write_bytes(to_json(index))
    return path


@dataclass
class Layout:
    """An OCI image layout on disk, as skopeo wrote it."""

    path: Path
    index: dict

    def blob(self, digest: str) -> bytes:
        algorithm, hexdigest = digest.split(":", 1)
        data = (self.path / "blobs" / algorithm / hexdigest).read_bytes()
        assert sha256(data) == digest, f"layout blob {digest} does not match its content"
        return data

    def descriptor(self, tag: str | None = None) -> dict:
        """The index.json entry for ``tag``, or the only entry when ``tag`` is None."""
        entries = self.index["manifests"]
        if tag is None:
            assert len(entries) == 1, entries
            return entries[0]
        found = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) == tag]
        assert len(found) == 1, f"tag {tag!r} in {entries}"
        return found[0]

    def manifest(self, digest: str) -> dict:
        return json.loads(self.blob(digest))


def read_layout(path: Path) -> Layout:
    assert json.loads((path / "oci-layout").read_bytes())["imageLayoutVersion"] == "1.0.0"
    return Layout(path, json.loads((path / "index.json").read_bytes()))


# -- pushing without a client (for tests that need an image in place first) ------------------


def push_image(client: httpx.Client, name: str, image: Image, tag: str | None = None) -> str:
    """Push blobs and manifest with monolithic uploads; returns the manifest digest."""
    for blob in image.blobs:
        oci.push_blob(client, name, blob.data)
    return oci.push_manifest(client, name, tag or image.digest, image.manifest.data, image.manifest.media_type)


# -- a runnable image: static busybox -------------------------------------------------------


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a PT_INTERP program header (no dynamic loader)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only; Debian's busybox-static is
        return False
    endian = "<" if data[5] == 1 else ">"
    (phoff,) = struct.unpack_from(endian + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    return all(struct.unpack_from(endian + "I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def busybox_rootfs(busybox: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """An uncompressed rootfs tarball: /bin/busybox, a few applet symlinks and ``extra`` files."""
    applets = ("sh", "echo", "cat", "ls")
    links = {f"bin/{applet}": "busybox" for applet in applets}
    return tar_bytes({"bin/busybox": busybox.read_bytes(), **(extra or {})}, links, mode=0o755)
