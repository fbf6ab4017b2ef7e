"""Shared helpers for the HTTP tests: digests, blob and image pushes, error checks, raw sockets.

Everything here talks to a real registry through ``httpx`` (or a bare socket where httpx would
tidy the request up for us); nothing reaches into the server's modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_NONDIST_LAYER = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

EMPTY_BLOB = b"{}"
MAX_MANIFEST = 4 * 1024 * 1024


# -- names and digests --------------------------------------------------------------------------


def repo(prefix: str = "t") -> str:
    """A repository name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def blob_path(data_dir: Path, dgst: str) -> Path:
    """The one stored copy of a blob, ``blobs/<alg>/<2 hex>/<hex>.<upload id>`` (a non-existent
    path when there is none). Asserts there is at most one copy: equal content is stored once."""
    algorithm, hex_ = dgst.split(":", 1)
    folder = Path(data_dir) / "blobs" / algorithm / hex_[:2]
    copies = sorted(folder.glob(f"{hex_}*"))
    assert len(copies) <= 1, copies
    return copies[0] if copies else folder / hex_


def files_under(path: Path) -> list[Path]:
    path = Path(path)
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data), "size": len(data), **extra}


def encode(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


# -- errors -------------------------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, *codes: str) -> dict[str, Any]:
    """The spec's error body: ``{"errors": [{"code", "message", "detail"}]}`` with one of ``codes``."""
    assert response.status_code == status, (response.status_code, response.text)
    if response.request.method == "HEAD":
        assert not response.content
        return {}
    assert response.headers.get("content-type", "").split(";")[0] == "application/json", response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"errors"}, body
    assert isinstance(body["errors"], list) and body["errors"], body
    for error in body["errors"]:
        assert {"code", "message", "detail"} <= set(error), error
        assert isinstance(error["code"], str) and isinstance(error["message"], str), error
    if codes:
        assert body["errors"][0]["code"] in codes, (codes, body)
    return body


def assert_no_traceback(log: str) -> None:
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:4000]


# -- blobs --------------------------------------------------------------------------------------


def push_blob(client: httpx.Client, name: str, data: bytes, algorithm: str = "sha256") -> str:
    """Monolithic upload: ``POST /blobs/uploads/?digest=`` with the whole body."""
    dgst = digest(data, algorithm)
    r = client.post(
        f"/v2/{name}/blobs/uploads/",
        params={"digest": dgst},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers["Docker-Content-Digest"] == dgst
    return dgst


def start_upload(client: httpx.Client, name: str) -> str:
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202, (r.status_code, r.text)
    return r.headers["Location"]


def patch_chunk(client: httpx.Client, location: str, data: bytes, start: int) -> httpx.Response:
    return client.patch(
        location,
        content=data,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(data) - 1}",
        },
    )


def push_blob_chunked(client: httpx.Client, name: str, data: bytes, chunk_size: int, algorithm: str = "sha256") -> str:
    """POST, a PATCH per chunk with ``Content-Range``, then an empty PUT with the digest."""
    dgst = digest(data, algorithm)
    location = start_upload(client, name)
    for start in range(0, len(data), chunk_size):
        r = patch_chunk(client, location, data[start : start + chunk_size], start)
        assert r.status_code == 202, (r.status_code, r.text)
        assert r.headers["Range"] == f"0-{min(start + chunk_size, len(data)) - 1}"
        location = r.headers["Location"]
    r = client.put(location, params={"digest": dgst})
    assert r.status_code == 201, (r.status_code, r.text)
    return dgst


def range_end(response: httpx.Response) -> int:
    """The offset after the last byte an upload holds, from its ``Range: 0-<last>`` header."""
    value = response.headers["Range"].removeprefix("bytes=")
    start, last = value.split("-")
    assert start == "0", value
    return int(last) + 1


# -- manifests and images -----------------------------------------------------------------------


def put_manifest(
    client: httpx.Client,
    name: str,
    reference: str,
    manifest: dict[str, Any] | bytes,
    media_type: str | None = None,
    **params: Any,
) -> httpx.Response:
    content = manifest if isinstance(manifest, bytes) else encode(manifest)
    if media_type is None and isinstance(manifest, dict):
        media_type = manifest.get("mediaType")
    headers = {"Content-Type": media_type} if media_type else {}
    return client.put(f"/v2/{name}/manifests/{reference}", content=content, headers=headers, params=params or None)


def push_manifest(
    client: httpx.Client, name: str, reference: str, manifest: dict[str, Any] | bytes, media_type: str | None = None
) -> str:
    content = manifest if isinstance(manifest, bytes) else encode(manifest)
    r = put_manifest(client, name, reference, content, media_type or _declared_type(manifest))
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.headers["Docker-Content-Digest"] == digest(content)
    return digest(content)


def _declared_type(manifest: dict[str, Any] | bytes) -> str | None:
    if isinstance(manifest, bytes):
        manifest = json.loads(manifest)
    return manifest.get("mediaType")


@dataclass
class Image:
    media_type: str
    manifest: dict[str, Any]
    config: bytes
    layers: list[bytes] = field(default_factory=list)

    @property
    def content(self) -> bytes:
        return encode(self.manifest)

    @property
    def digest(self) -> str:
        return digest(self.content)

    @property
    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return descriptor(self.media_type, self.content, **extra)


def make_image(
    media_type: str = OCI_MANIFEST, layers: int = 2, layer_size: int = 4096, architecture: str = "amd64", **extra: Any
) -> Image:
    """A random image (not pushed): a config and ``layers`` random layers."""
    docker = media_type == DOCKER_MANIFEST
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "nonce": uuid.uuid4().hex,
        }
    ).encode()
    blobs = [os.urandom(layer_size) for _ in range(layers)]
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, b) for b in blobs],
        **extra,
    }
    return Image(media_type, manifest, config, blobs)


def make_artifact(
    artifact_type: str,
    subject: dict[str, Any] | None = None,
    payload: bytes | None = None,
    annotations: dict[str, str] | None = None,
) -> Image:
    """An OCI 1.1 artifact: ``artifactType``, the empty config ``{}`` and one payload layer."""
    payload = os.urandom(64) if payload is None else payload
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_BLOB),
        "layers": [descriptor("application/octet-stream", payload)],
    }
    if subject is not None:
        manifest["subject"] = subject
    if annotations:
        manifest["annotations"] = annotations
    return Image(OCI_MANIFEST, manifest, EMPTY_BLOB, [payload])


def make_index(
    children: list[Image], media_type: str = OCI_INDEX, platforms: list[tuple[str, str]] | None = None, **extra: Any
) -> dict[str, Any]:
    platforms = platforms or [("linux", "amd64")] * len(children)
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            child.descriptor(platform={"os": os_, "architecture": arch})
            for child, (os_, arch) in zip(children, platforms, strict=True)
        ],
        **extra,
    }


def push_image(
    client: httpx.Client, name: str, reference: str | None = None, image: Image | None = None, **kw: Any
) -> Image:
    """Push an image's blobs, then its manifest under ``reference`` (its digest by default)."""
    image = image or make_image(**kw)
    for blob in image.blobs:
        push_blob(client, name, blob)
    push_manifest(client, name, reference or image.digest, image.content, image.media_type)
    return image


# -- raw HTTP -----------------------------------------------------------------------------------


def raw_request(host: str, request: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no URL tidying) and read the answer until the server closes."""
    address, port = host.rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return parse_response(b"".join(chunks))


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, body


def raw_get(host: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    return raw_request(
        host, f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".encode()
    )


def send_truncated(
    host: str, method: str, path: str, declared: int, body: bytes, content_type: str = "application/octet-stream"
) -> None:
    """Declare ``declared`` bytes, send only ``body``, then hang up."""
    assert declared > len(body)
    address, port = host.rsplit(":", 1)
    with socket.create_connection((address, int(port)), timeout=30) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
            + body
        )
        sock.shutdown(socket.SHUT_WR)
        # Whatever the server says (if anything) before it gives up on the body.
        sock.settimeout(30)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass
