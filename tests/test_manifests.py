"""Manifests, tags, catalog and referrers over HTTP."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import httpx
import pytest

from tests.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_BLOB,
    MAX_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    OCI_NONDIST_LAYER,
    Image,
    assert_error,
    descriptor,
    digest,
    encode,
    make_artifact,
    make_image,
    make_index,
    push_blob,
    push_image,
    push_manifest,
    put_manifest,
    repo,
)

pytestmark = pytest.mark.core

KINDS = ["oci-manifest", "oci-index", "docker-manifest", "docker-list", "artifact"]


def _push_kind(client: httpx.Client, name: str, kind: str) -> tuple[str, bytes]:
    """Push what a manifest of ``kind`` refers to; return its media type and bytes (not pushed)."""
    if kind == "oci-manifest":
        image = push_image(client, name, media_type=OCI_MANIFEST)
        return OCI_MANIFEST, image.content
    if kind == "docker-manifest":
        image = push_image(client, name, media_type=DOCKER_MANIFEST)
        return DOCKER_MANIFEST, image.content
    if kind == "artifact":
        artifact = make_artifact("application/vnd.example.sbom.v1+json")
        for blob in artifact.blobs:
            push_blob(client, name, blob)
        assert artifact.manifest["config"] == {"mediaType": OCI_EMPTY, "digest": digest(b"{}"), "size": 2}
        return OCI_MANIFEST, artifact.content
    child_type, index_type = (OCI_MANIFEST, OCI_INDEX) if kind == "oci-index" else (DOCKER_MANIFEST, DOCKER_LIST)
    children = [push_image(client, name, media_type=child_type, architecture=a) for a in ("amd64", "arm64")]
    index = make_index(children, index_type, [("linux", "amd64"), ("linux", "arm64")])
    return index_type, encode(index)


@pytest.mark.parametrize("kind", KINDS)
def test_put_get_head_delete_by_tag_and_digest(client: httpx.Client, kind: str):
    name = repo(f"m-{kind}")
    media_type, content = _push_kind(client, name, kind)
    dgst = digest(content)

    r = client.put(f"/v2/{name}/manifests/v1", content=content, headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == dgst
    assert r.headers["Location"].endswith(f"/v2/{name}/manifests/{dgst}")

    every_type = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
    for reference in ("v1", dgst):
        r = client.get(f"/v2/{name}/manifests/{reference}", headers={"Accept": every_type})
        assert r.status_code == 200, r.text
        assert r.content == content
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == dgst
        r = client.head(f"/v2/{name}/manifests/{reference}", headers={"Accept": every_type})
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(len(content))
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == dgst
        assert r.content == b""

    # Pushing by digest is the same manifest; it can be pushed again, idempotently.
    r = client.put(f"/v2/{name}/manifests/{dgst}", content=content, headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/v2/{name}/manifests/{dgst}")
    assert r.headers["Docker-Content-Digest"] == dgst

    r = client.delete(f"/v2/{name}/manifests/{dgst}")
    assert r.status_code == 202
    for reference in ("v1", dgst):
        assert_error(client.get(f"/v2/{name}/manifests/{reference}"), 404, "MANIFEST_UNKNOWN")
        assert client.head(f"/v2/{name}/manifests/{reference}").status_code == 404
    assert_error(client.delete(f"/v2/{name}/manifests/{dgst}"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == []


def test_manifest_without_accept_returns_stored_type(client: httpx.Client):
    name = repo("m-noaccept")
    children = [push_image(client, name, media_type=DOCKER_MANIFEST)]
    index = make_index(children, DOCKER_LIST)
    dgst = push_manifest(client, name, "multi", index)
    r = client.get(f"/v2/{name}/manifests/multi")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == DOCKER_LIST
    assert r.headers["Docker-Content-Digest"] == dgst


@pytest.mark.parametrize("list_type,child_type", [(DOCKER_LIST, DOCKER_MANIFEST), (OCI_INDEX, OCI_MANIFEST)])
def test_accept_negotiation_picks_linux_amd64(client: httpx.Client, list_type: str, child_type: str):
    name = repo("m-accept")
    arm = push_image(client, name, media_type=child_type, architecture="arm64")
    amd = push_image(client, name, media_type=child_type, architecture="amd64")
    win = push_image(client, name, media_type=child_type, architecture="amd64")
    index = make_index([arm, win, amd], list_type, [("linux", "arm64"), ("windows", "amd64"), ("linux", "amd64")])
    index_digest = push_manifest(client, name, "multi", index)

    # A client that only reads single-platform manifests of that family gets the linux/amd64 one.
    r = client.get(f"/v2/{name}/manifests/multi", headers={"Accept": child_type})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == child_type
    assert r.headers["Docker-Content-Digest"] == amd.digest
    assert r.content == amd.content

    # A client that accepts the list gets the list.
    r = client.get(f"/v2/{name}/manifests/multi", headers={"Accept": f"{child_type}, {list_type}"})
    assert r.headers["Content-Type"] == list_type
    assert r.headers["Docker-Content-Digest"] == index_digest
    # Several Accept headers, as docker sends them, count together.
    r = client.get(f"/v2/{name}/manifests/multi", headers=[("Accept", child_type), ("Accept", list_type)])
    assert r.headers["Docker-Content-Digest"] == index_digest
    r = client.get(f"/v2/{name}/manifests/multi", headers={"Accept": "*/*"})
    assert r.headers["Docker-Content-Digest"] == index_digest


def test_missing_config_or_layer_is_manifest_blob_unknown(client: httpx.Client):
    name = repo("m-missing")
    image = make_image(layers=2)
    push_blob(client, name, image.layers[0])
    push_blob(client, name, image.layers[1])
    body = assert_error(put_manifest(client, name, "v1", image.manifest), 400, "MANIFEST_BLOB_UNKNOWN")
    assert digest(image.config) in json.dumps(body)

    image = make_image(layers=2)
    push_blob(client, name, image.config)
    push_blob(client, name, image.layers[0])
    body = assert_error(put_manifest(client, name, "v1", image.manifest), 400, "MANIFEST_BLOB_UNKNOWN")
    assert digest(image.layers[1]) in json.dumps(body)
    assert_error(client.get(f"/v2/{name}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


def test_blob_in_another_repository_does_not_count(client: httpx.Client):
    name, other = repo("m-other-a"), repo("m-other-b")
    image = push_image(client, other)
    assert_error(put_manifest(client, name, "v1", image.manifest), 400, "MANIFEST_BLOB_UNKNOWN")


def test_nondistributable_layer_may_be_missing(client: httpx.Client):
    name = repo("m-nondist")
    image = make_image(layers=1)
    for blob in image.blobs:
        push_blob(client, name, blob)
    foreign = os.urandom(100)
    image.manifest["layers"].append(descriptor(OCI_NONDIST_LAYER, foreign, urls=["https://example.com/l"]))
    dgst = push_manifest(client, name, "v1", image.manifest)
    assert client.get(f"/v2/{name}/manifests/{dgst}").status_code == 200


def test_missing_index_child_is_refused(client: httpx.Client):
    name = repo("m-child")
    present = push_image(client, name)
    absent = make_image()
    index = make_index([present, absent], OCI_INDEX)
    body = assert_error(put_manifest(client, name, "multi", index), 400, "MANIFEST_BLOB_UNKNOWN")
    assert absent.digest in json.dumps(body)
    assert_error(client.get(f"/v2/{name}/manifests/multi"), 404, "MANIFEST_UNKNOWN")


def test_subject_may_be_missing_and_oci_subject_header(client: httpx.Client):
    name = repo("m-subject")
    subject = make_image()  # never pushed
    artifact = make_artifact("application/vnd.example.sig", subject=subject.descriptor())
    for blob in artifact.blobs:
        push_blob(client, name, blob)
    r = put_manifest(client, name, artifact.digest, artifact.manifest)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject.digest

    # Referrers are listed even before the subject arrives.
    r = client.get(f"/v2/{name}/referrers/{subject.digest}")
    assert [d["digest"] for d in r.json()["manifests"]] == [artifact.digest]

    push_image(client, name, "v1", image=subject)
    r = client.get(f"/v2/{name}/manifests/v1")
    assert r.headers["Docker-Content-Digest"] == subject.digest
    # Manifests without a subject get no OCI-Subject header.
    plain = make_image()
    for blob in plain.blobs:
        push_blob(client, name, blob)
    r = put_manifest(client, name, "plain", plain.manifest)
    assert r.status_code == 201
    assert "OCI-Subject" not in r.headers


def test_put_by_digest_with_several_tags(client: httpx.Client):
    name = repo("m-tags")
    image = make_image()
    for blob in image.blobs:
        push_blob(client, name, blob)
    r = client.put(
        f"/v2/{name}/manifests/{image.digest}?tag=a&tag=b&tag=c-1.0",
        content=image.content,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == image.digest
    for tag in ("a", "b", "c-1.0"):
        r = client.get(f"/v2/{name}/manifests/{tag}")
        assert r.status_code == 200, tag
        assert r.headers["Docker-Content-Digest"] == image.digest
    assert client.get(f"/v2/{name}/tags/list").json() == {"name": name, "tags": ["a", "b", "c-1.0"]}


def test_retag_moves_the_tag(client: httpx.Client):
    name = repo("m-retag")
    first = push_image(client, name, "latest")
    second = push_image(client, name, "latest")
    assert client.get(f"/v2/{name}/manifests/latest").headers["Docker-Content-Digest"] == second.digest
    # The old manifest is still there by digest.
    assert client.get(f"/v2/{name}/manifests/{first.digest}").status_code == 200


def padded_manifest(client: httpx.Client, name: str, size: int) -> dict[str, Any]:
    """A valid manifest (its config pushed to ``name``) padded to exactly ``size`` bytes."""
    image = make_image(layers=0)
    push_blob(client, name, image.config)
    manifest = image.manifest
    manifest["annotations"] = {"pad": ""}
    manifest["annotations"]["pad"] = "x" * (size - len(encode(manifest)))
    assert len(encode(manifest)) == size
    return manifest


def test_manifest_at_limit_is_accepted_and_over_is_413(client: httpx.Client):
    name = repo("m-size")
    manifest = padded_manifest(client, name, MAX_MANIFEST)
    assert put_manifest(client, name, "big", manifest).status_code == 201

    manifest["annotations"]["pad"] += "x"
    over = encode(manifest)
    r = put_manifest(client, name, "too-big", over, OCI_MANIFEST)
    assert_error(r, 413)
    assert_error(client.get(f"/v2/{name}/manifests/too-big"), 404, "MANIFEST_UNKNOWN")

    # Also without a Content-Length: a chunked body.
    def body():
        for i in range(0, len(over), 65536):
            yield over[i : i + 65536]

    r = client.put(f"/v2/{name}/manifests/too-big", content=body(), headers={"Content-Type": OCI_MANIFEST})
    assert_error(r, 413)
    assert_error(client.get(f"/v2/{name}/manifests/too-big"), 404, "MANIFEST_UNKNOWN")


def test_digest_mismatch_on_put_by_digest(client: httpx.Client):
    name = repo("m-mismatch")
    image = push_image(client, name)
    other = make_image()
    r = put_manifest(client, name, other.digest, image.manifest)
    assert_error(r, 400, "DIGEST_INVALID")
    assert client.head(f"/v2/{name}/manifests/{other.digest}").status_code == 404


def test_sha512_manifest_reference(client: httpx.Client):
    name = repo("m-sha512")
    image = push_image(client, name)
    dgst512 = digest(image.content, "sha512")
    r = put_manifest(client, name, dgst512, image.manifest)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == dgst512
    r = client.get(f"/v2/{name}/manifests/{dgst512}")
    assert r.status_code == 200 and r.content == image.content


def test_delete_tag_keeps_manifest(client: httpx.Client):
    name = repo("m-deltag")
    image = push_image(client, name, "one")
    push_manifest(client, name, "two", image.content, OCI_MANIFEST)
    r = client.delete(f"/v2/{name}/manifests/one")
    assert r.status_code == 202
    assert_error(client.get(f"/v2/{name}/manifests/one"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.delete(f"/v2/{name}/manifests/one"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{name}/manifests/two").status_code == 200
    assert client.get(f"/v2/{name}/manifests/{image.digest}").status_code == 200
    assert client.get(f"/v2/{name}/tags/list").json()["tags"] == ["two"]


def test_unknown_repository(client: httpx.Client):
    name = repo("m-nothing")
    assert_error(client.get(f"/v2/{name}/manifests/latest"), 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    assert_error(client.get(f"/v2/{name}/tags/list"), 404, "NAME_UNKNOWN")
    assert_error(client.delete(f"/v2/{name}/manifests/latest"), 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")


def _next(link: str | None) -> str | None:
    if not link:
        return None
    match = re.fullmatch(r'<([^>]+)>;\s*rel="next"', link.strip())
    assert match, link
    return match[1]


def _walk(client: httpx.Client, url: str, key: str, n: int) -> list[list[str]]:
    pages = []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        items = r.json()[key]
        assert len(items) <= n
        pages.append(items)
        url = _next(r.headers.get("Link"))
        if url:
            assert len(items) == n
            assert f"n={n}" in url and "last=" in url
    return pages


def test_tags_list_pagination(client: httpx.Client):
    name = repo("m-taglist")
    image = push_image(client, name)
    tags = ["v1", "v10", "v2", "alpha", "Beta", "_x", "1.0", "z-z", "latest"]
    for tag in tags:
        push_manifest(client, name, tag, image.content, OCI_MANIFEST)
    everything = client.get(f"/v2/{name}/tags/list").json()
    assert everything["name"] == name
    assert sorted(everything["tags"]) == sorted(tags)
    assert everything["tags"] == sorted(everything["tags"])
    # The order the server uses is total: pages joined give the whole list, in that order.
    ordered = everything["tags"]

    pages = _walk(client, f"/v2/{name}/tags/list?n=2", "tags", 2)
    assert [t for page in pages for t in page] == ordered
    assert len(pages) == 5
    pages = _walk(client, f"/v2/{name}/tags/list?n=3", "tags", 3)
    assert [t for page in pages for t in page] == ordered

    r = client.get(f"/v2/{name}/tags/list", params={"n": 3, "last": ordered[2]})
    assert r.json()["tags"] == ordered[3:6]
    r = client.get(f"/v2/{name}/tags/list", params={"last": ordered[-2]})
    assert r.json()["tags"] == ordered[-1:]
    assert "Link" not in r.headers
    r = client.get(f"/v2/{name}/tags/list", params={"n": len(tags)})
    assert r.json()["tags"] == ordered
    assert "Link" not in r.headers
    r = client.get(f"/v2/{name}/tags/list", params={"n": 100})
    assert r.json()["tags"] == ordered


def test_tags_list_n_zero(client: httpx.Client):
    """The spec: when n is zero, an empty list and no Link header."""
    name = repo("m-tagzero")
    image = push_image(client, name, "a")
    push_manifest(client, name, "b", image.content, OCI_MANIFEST)
    r = client.get(f"/v2/{name}/tags/list", params={"n": 0})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


def test_catalog_pagination(client: httpx.Client):
    prefix = repo("cat")
    names = sorted(f"{prefix}/{suffix}" for suffix in ("b", "a", "c/d", "e", "a-b"))
    for name in names:
        push_image(client, name, "v1")
    pages = _walk(client, "/v2/_catalog?n=2", "repositories", 2)
    seen = [r for page in pages for r in page]
    assert seen == sorted(seen) or seen == sorted(seen, key=str.lower)
    assert len(seen) == len(set(seen))
    assert [r for r in seen if r.startswith(prefix + "/")] == names
    r = client.get("/v2/_catalog", params={"n": 2, "last": names[0]})
    assert r.json()["repositories"] == names[1:3]
    whole = client.get("/v2/_catalog").json()["repositories"]
    assert set(names) <= set(whole)


def test_catalog_n_zero(client: httpx.Client):
    push_image(client, repo("cat-zero"), "v1")
    r = client.get("/v2/_catalog", params={"n": 0})
    assert r.status_code == 200, r.text
    assert r.json()["repositories"] == []
    assert "Link" not in r.headers


def _referrers(client: httpx.Client, name: str, dgst: str, **params: Any) -> httpx.Response:
    r = client.get(f"/v2/{name}/referrers/{dgst}", params=params or None)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert isinstance(body["manifests"], list)
    return r


def _push_artifact(client: httpx.Client, name: str, artifact: Image) -> None:
    for blob in artifact.blobs:
        push_blob(client, name, blob)
    push_manifest(client, name, artifact.digest, artifact.content, OCI_MANIFEST)


def test_referrers(client: httpx.Client):
    name = repo("m-referrers")
    subject = push_image(client, name, "v1")
    sbom = make_artifact(
        "application/vnd.example.sbom.v1+json", subject=subject.descriptor(), annotations={"org.example.kind": "sbom"}
    )
    sig = make_artifact("application/vnd.example.sig.v1", subject=subject.descriptor())
    _push_artifact(client, name, sbom)
    _push_artifact(client, name, sig)
    # An image (not an artifact) with a subject: its artifactType is its config's media type.
    plain = make_image(layers=1, subject=subject.descriptor())
    push_image(client, name, image=plain)
    # An index with a subject and an artifactType.
    index = make_index([sig], OCI_INDEX, artifactType="application/vnd.example.bundle", subject=subject.descriptor())
    index_digest = push_manifest(client, name, "bundle", index)
    # An index with a subject and no artifactType.
    bare_index = make_index([sbom], OCI_INDEX, subject=subject.descriptor())
    bare_index_digest = push_manifest(client, name, "bare", bare_index)
    # Unrelated artifact in another repository with the same subject digest.
    _push_artifact(
        client, repo("m-referrers-other"), make_artifact("application/vnd.example.sig.v1", subject=subject.descriptor())
    )

    body = _referrers(client, name, subject.digest).json()
    found = {d["digest"]: d for d in body["manifests"]}
    assert set(found) == {sbom.digest, sig.digest, plain.digest, index_digest, bare_index_digest}
    assert found[sbom.digest] == {
        "mediaType": OCI_MANIFEST,
        "digest": sbom.digest,
        "size": len(sbom.content),
        "artifactType": "application/vnd.example.sbom.v1+json",
        "annotations": {"org.example.kind": "sbom"},
    }
    assert found[sig.digest]["artifactType"] == "application/vnd.example.sig.v1"
    assert "annotations" not in found[sig.digest] or found[sig.digest]["annotations"] == {}
    assert found[plain.digest]["artifactType"] == OCI_CONFIG
    assert found[index_digest]["mediaType"] == OCI_INDEX
    assert found[index_digest]["artifactType"] == "application/vnd.example.bundle"
    assert "artifactType" not in found[bare_index_digest]

    r = _referrers(client, name, subject.digest, artifactType="application/vnd.example.sig.v1")
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [sig.digest]
    r = _referrers(client, name, subject.digest, artifactType="application/vnd.example.none")
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert r.json()["manifests"] == []
    assert "OCI-Filters-Applied" not in _referrers(client, name, subject.digest).headers

    # Deleting a referrer removes it from the list.
    assert client.delete(f"/v2/{name}/manifests/{sig.digest}").status_code == 202
    body = _referrers(client, name, subject.digest).json()
    assert sig.digest not in {d["digest"] for d in body["manifests"]}
    assert sbom.digest in {d["digest"] for d in body["manifests"]}


def test_referrers_empty_is_200(client: httpx.Client):
    name = repo("m-referrers-none")
    subject = push_image(client, name, "v1")
    assert _referrers(client, name, subject.digest).json()["manifests"] == []
    # Unknown subject digest: still an empty index, never 404.
    assert _referrers(client, name, digest(os.urandom(16))).json()["manifests"] == []


def test_artifact_config_is_the_empty_blob(client: httpx.Client):
    name = repo("m-empty")
    artifact = make_artifact("application/vnd.example.thing")
    _push_artifact(client, name, artifact)
    r = client.get(f"/v2/{name}/blobs/{digest(EMPTY_BLOB)}")
    assert r.status_code == 200 and r.content == b"{}"
    assert digest(EMPTY_BLOB) == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def test_artifact_with_no_layers(client: httpx.Client):
    name = repo("m-nolayers")
    push_blob(client, name, EMPTY_BLOB)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.empty",
        "config": descriptor(OCI_EMPTY, EMPTY_BLOB),
        "layers": [descriptor(OCI_EMPTY, EMPTY_BLOB)],
    }
    dgst = push_manifest(client, name, "v1", manifest)
    assert client.get(f"/v2/{name}/manifests/{dgst}").json()["artifactType"] == "application/vnd.example.empty"


def test_manifest_with_oci_layer_types(client: httpx.Client):
    """Layer media types other than the usual ones are accepted (artifacts, zstd, ...)."""
    name = repo("m-layertypes")
    blobs = [os.urandom(32) for _ in range(3)]
    config = make_image(layers=0).config
    for blob in [config, *blobs]:
        push_blob(client, name, blob)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [
            descriptor(OCI_LAYER, blobs[0]),
            descriptor("application/vnd.oci.image.layer.v1.tar+zstd", blobs[1]),
            descriptor("application/vnd.example.data", blobs[2]),
        ],
    }
    push_manifest(client, name, "v1", manifest)
