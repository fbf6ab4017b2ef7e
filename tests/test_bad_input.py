"""Hostile and broken requests: every one answered with the spec's JSON error, never a 500.

Each test also checks that the server logged no traceback while it ran.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_error,
    assert_no_traceback,
    blob_path,
    descriptor,
    digest,
    encode,
    make_image,
    patch_chunk,
    push_blob,
    push_image,
    put_manifest,
    raw_get,
    raw_request,
    repo,
    send_truncated,
    start_upload,
)
from tests.server import RegistryServer

pytestmark = pytest.mark.core


@pytest.fixture(autouse=True)
def no_traceback(registry: RegistryServer) -> Iterator[None]:
    before = len(registry.log())
    yield
    assert_no_traceback(registry.log()[before:])


@pytest.fixture
def image_repo(client: httpx.Client) -> tuple[str, dict[str, Any]]:
    """A repository holding an image's blobs, and that image's (valid, unpushed) manifest."""
    name = repo("bad")
    image = make_image(layers=1)
    for blob in image.blobs:
        push_blob(client, name, blob)
    return name, image.manifest


def _mutate(manifest: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    manifest = json.loads(json.dumps(manifest))
    target = manifest
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    elif callable(value):
        target[path[-1]] = value(target[path[-1]])
    else:
        target[path[-1]] = value
    return manifest


_DELETE = object()
GOOD_DIGEST = "sha256:" + "a" * 64

BROKEN_MANIFESTS = {
    "schema-1": (["schemaVersion"], 1),
    "schema-string": (["schemaVersion"], "2"),
    "schema-missing": (["schemaVersion"], _DELETE),
    "schema-bool": (["schemaVersion"], True),
    "config-missing": (["config"], _DELETE),
    "config-not-object": (["config"], "sha256:abc"),
    "config-null": (["config"], None),
    "layers-missing": (["layers"], _DELETE),
    "layers-not-list": (["layers"], {"0": 1}),
    "layer-not-object": (["layers", 0], 42),
    "config-digest-bad": (["config", "digest"], "sha256:xyz"),
    "config-digest-short": (["config", "digest"], "sha256:" + "a" * 63),
    "config-digest-upper": (["config", "digest"], "sha256:" + "A" * 64),
    "config-digest-alg": (["config", "digest"], "md5:" + "a" * 32),
    "config-digest-missing": (["config", "digest"], _DELETE),
    "config-digest-int": (["config", "digest"], 12),
    "config-digest-newline": (["config", "digest"], lambda old: old + "\n"),
    "layer-digest-space": (["layers", 0, "digest"], lambda old: " " + old),
    "layer-digest-empty": (["layers", 0, "digest"], ""),
    "layer-digest-no-colon": (["layers", 0, "digest"], "a" * 64),
    "config-size-negative": (["config", "size"], -1),
    "config-size-string": (["config", "size"], "10"),
    "config-size-float": (["config", "size"], 1.5),
    "config-size-bool": (["config", "size"], True),
    "config-size-missing": (["config", "size"], _DELETE),
    "layer-size-null": (["layers", 0, "size"], None),
    "layer-mediatype-missing": (["layers", 0, "mediaType"], _DELETE),
    "layer-mediatype-int": (["layers", 0, "mediaType"], 1),
    "mediatype-unknown": (["mediaType"], "application/vnd.example.unknown+json"),
    "mediatype-int": (["mediaType"], 7),
    "annotations-not-strings": (["annotations"], {"a": 1}),
    "annotations-list": (["annotations"], ["a"]),
    "artifact-type-int": (["artifactType"], 3),
    "artifact-type-too-long": (["artifactType"], "application/vnd.example." + "x" * 240 + "+json"),
    "artifact-type-nul": (["artifactType"], "application/vnd.example\u0000+json"),
    "config-mediatype-too-long": (["config", "mediaType"], "application/vnd.example." + "x" * 240 + "+json"),
    "subject-bad-digest": (["subject"], {"mediaType": OCI_MANIFEST, "digest": "sha256:nope", "size": 1}),
    "subject-not-object": (["subject"], "sha256:" + "a" * 64),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MANIFESTS))
def test_broken_manifest_structure(client: httpx.Client, image_repo, case: str):
    name, manifest = image_repo
    path, value = BROKEN_MANIFESTS[case]
    broken = _mutate(manifest, path, value)
    media_type = OCI_MANIFEST if case.startswith("mediatype") else broken.get("mediaType")
    r = put_manifest(client, name, "v1", encode(broken), media_type if isinstance(media_type, str) else None)
    assert_error(r, 400, "MANIFEST_INVALID")
    assert_error(client.get(f"/v2/{name}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    # The untouched manifest is fine, so it was the mutation that was refused.
    assert put_manifest(client, name, "ok", manifest).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"[]",
        b"null",
        b"2",
        b'"manifest"',
        b"\xff\xfe\x00garbage",
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"',
        b'{"schemaVersion": 2} trailing',
        b"\x00" * 100,
        b'{"schemaVersion": ' + b"9" * 5000 + b"}",
        b'{"schemaVersion": 2, "config": {"size": 1e999}}',
    ],
)
def test_malformed_json_manifest(client: httpx.Client, body: bytes):
    name = repo("bad-json")
    for content_type in (OCI_MANIFEST, None):
        r = put_manifest(client, name, "v1", body, content_type)
        assert_error(r, 400, "MANIFEST_INVALID")


def test_deeply_nested_json_manifest(client: httpx.Client):
    """A small body that nests deeper than a recursive JSON parser copes with."""
    name = repo("bad-deep")
    for depth in (10_000, 100_000):
        body = b'{"schemaVersion": 2, "x": ' + b"[" * depth + b"]" * depth + b"}"
        r = put_manifest(client, name, "v1", body, OCI_MANIFEST)
        assert_error(r, 400, "MANIFEST_INVALID")
    body = b'{"schemaVersion": 2, "x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}"
    assert_error(put_manifest(client, name, "v1", body, OCI_MANIFEST), 400, "MANIFEST_INVALID")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/vnd.example.unknown+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
        DOCKER_MANIFEST,  # disagrees with the body's OCI mediaType
        OCI_INDEX,
    ],
)
def test_content_type_refused(client: httpx.Client, image_repo, content_type: str):
    name, manifest = image_repo
    r = put_manifest(client, name, "v1", encode(manifest), content_type)
    assert_error(r, 400, "MANIFEST_INVALID")


def test_index_with_broken_entries(client: httpx.Client):
    name = repo("bad-index")
    child = push_image(client, name)
    good = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child.descriptor()]}
    for broken in (
        {**good, "manifests": None},
        {**good, "manifests": "x"},
        {k: v for k, v in good.items() if k != "manifests"},
        {**good, "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:1", "size": 1}]},
        {**good, "manifests": [{"mediaType": OCI_MANIFEST, "digest": child.digest, "size": -5}]},
        {**good, "manifests": [None]},
        {**good, "mediaType": DOCKER_LIST},  # Content-Type says OCI index
    ):
        r = put_manifest(client, name, "multi", encode(broken), OCI_INDEX)
        assert_error(r, 400, "MANIFEST_INVALID")
    assert put_manifest(client, name, "multi", good).status_code == 201


def test_oversized_manifest(client: httpx.Client, registry: RegistryServer):
    name = repo("bad-huge")
    body = b'{"schemaVersion": 2, "pad": "' + b"x" * MAX_MANIFEST + b'"}'
    assert_error(put_manifest(client, name, "v1", body, OCI_MANIFEST), 413)
    # Declared too large up front, with only a little actually sent.
    send_truncated(
        registry.host, "PUT", f"/v2/{name}/manifests/v2", 64 * MAX_MANIFEST, b'{"schemaVersion": 2', OCI_MANIFEST
    )
    assert_error(client.get(f"/v2/{name}/manifests/v2"), 404, "NAME_UNKNOWN", "MANIFEST_UNKNOWN")
    assert client.get("/v2/").status_code == 200


@pytest.mark.parametrize("mode", ["monolithic", "chunked", "put-body"])
def test_wrong_digest_on_upload_leaves_nothing(client: httpx.Client, registry: RegistryServer, mode: str):
    name = repo("bad-digest")
    data = os.urandom(5000)
    actual = digest(data)
    claimed = digest(data + b"!")
    if mode == "monolithic":
        r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": claimed}, content=data)
    else:
        location = start_upload(client, name)
        if mode == "chunked":
            assert patch_chunk(client, location, data, 0).status_code == 202
            r = client.put(location, params={"digest": claimed})
        else:
            r = client.put(location, params={"digest": claimed}, content=data)
    assert_error(r, 400, "DIGEST_INVALID")
    for dgst in (actual, claimed):
        assert client.head(f"/v2/{name}/blobs/{dgst}").status_code == 404
        assert_error(client.get(f"/v2/{name}/blobs/{dgst}"), 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")
        assert not blob_path(registry.data_dir, dgst).exists()
    # The bytes can still be pushed under their true digest.
    push_blob(client, name, data)


def test_bad_digest_on_put_keeps_the_session(client: httpx.Client):
    name = repo("bad-digest-syntax")
    data = os.urandom(100)
    location = start_upload(client, name)
    assert patch_chunk(client, location, data, 0).status_code == 202
    for bad in ("sha256:xyz", "nope", "sha256:" + "A" * 64, "sha1:" + "a" * 40):
        assert_error(client.put(location, params={"digest": bad}), 400, "DIGEST_INVALID")
    assert_error(client.put(location), 400, "DIGEST_INVALID")
    r = client.put(location, params={"digest": digest(data)})
    assert r.status_code == 201, r.text


def _long_name() -> str:
    return "a" * 120 + "/" + "b" * 135  # 256 characters


BAD_NAMES = [
    "Upper",
    "team/App",
    "a..b",
    "-lead",
    "trail-",
    "a___b",
    "a/",
    "a//b",
    "a b",
    "a%20b",
    ".hidden",
    "a/.b",
    "a:b",
    "a@b",
    _long_name(),
]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_names(client: httpx.Client, bad: str):
    dgst = GOOD_DIGEST
    for method, path in (
        ("POST", f"/v2/{bad}/blobs/uploads/"),
        ("GET", f"/v2/{bad}/blobs/{dgst}"),
        ("DELETE", f"/v2/{bad}/blobs/{dgst}"),
        ("GET", f"/v2/{bad}/manifests/latest"),
        ("PUT", f"/v2/{bad}/manifests/latest"),
        ("DELETE", f"/v2/{bad}/manifests/latest"),
        ("GET", f"/v2/{bad}/tags/list"),
        ("GET", f"/v2/{bad}/referrers/{dgst}"),
        ("GET", f"/v2/{bad}/blobs/uploads/{uuid.uuid4()}"),
    ):
        r = client.request(method, path, content=b"{}" if method == "PUT" else None)
        assert_error(r, 400, "NAME_INVALID")
    assert_error(client.head(f"/v2/{bad}/blobs/{dgst}"), 400)


def test_name_length_limit(client: httpx.Client):
    ok = "a" * 120 + "/" + "b" * 134  # 255 characters
    assert len(ok) == 255
    dgst = push_blob(client, ok, b"long name")
    assert client.get(f"/v2/{ok}/blobs/{dgst}").content == b"long name"
    assert len(_long_name()) == 256
    assert_error(client.post(f"/v2/{_long_name()}/blobs/uploads/"), 400, "NAME_INVALID")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/../etc/blobs/uploads/",
        "/v2/a/../b/blobs/uploads/",
        "/v2/a/./b/blobs/uploads/",
        "/v2/a/%2e%2e/b/blobs/uploads/",
        "/v2//a/blobs/uploads/",
        "/v2/%2Fa/blobs/uploads/",
    ],
)
def test_dot_segments_and_leading_slash(registry: RegistryServer, path: str):
    """Sent over a raw socket so that no client tidies the path first."""
    status, headers, body = raw_get(registry.host, path, "POST")
    assert status in (400, 404), (status, body)
    assert headers["content-type"].split(";")[0] == "application/json"
    errors = json.loads(body)["errors"]
    assert errors[0]["code"] in ("NAME_INVALID", "NAME_UNKNOWN", "UNSUPPORTED"), errors
    if status == 400:
        assert errors[0]["code"] == "NAME_INVALID"


BAD_DIGESTS = [
    "sha256:abc",
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "sha256:" + "a" * 65,
    "sha256",
    "sha256:",
    ":" + "a" * 64,
    "md5:" + "a" * 32,
    "sha384:" + "a" * 96,
    "SHA256:" + "a" * 64,
    "sha256:" + "a" * 63 + "%20",
    "notadigest",
    "sha256:" + "a" * 64 + "\n",
]


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_bad_digests(client: httpx.Client, bad: str):
    name = repo("bad-dg")
    push_image(client, name, "v1")
    raw, bad = bad, bad.replace("\n", "%0A")  # httpx will not put a bare newline in a URL
    cases = [
        ("GET", f"/v2/{name}/blobs/{bad}"),
        ("DELETE", f"/v2/{name}/blobs/{bad}"),
        ("GET", f"/v2/{name}/referrers/{bad}"),
    ]
    if ":" in bad:  # a reference without ':' is a tag, not a digest
        cases += [("GET", f"/v2/{name}/manifests/{bad}"), ("DELETE", f"/v2/{name}/manifests/{bad}")]
    for method, path in cases:
        assert_error(client.request(method, path), 400, "DIGEST_INVALID")
    assert client.head(f"/v2/{name}/blobs/{bad}").status_code == 400
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": raw}, content=b"data")
    assert_error(r, 400, "DIGEST_INVALID")
    if ":" in bad:
        r = put_manifest(client, name, bad, make_image().manifest)
        assert_error(r, 400, "DIGEST_INVALID", "MANIFEST_INVALID")


def test_bad_mount_parameters(client: httpx.Client):
    name = repo("bad-mount")
    source = repo("bad-mount-src")
    dgst = push_blob(client, source, b"mount me")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"mount": dgst, "from": "Bad..Name"})
    if r.status_code != 202:
        assert_error(r, 400, "NAME_INVALID")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"mount": "sha256:short", "from": source})
    if r.status_code != 202:
        assert_error(r, 400, "DIGEST_INVALID")
    assert client.head(f"/v2/{name}/blobs/{dgst}").status_code == 404


@pytest.mark.parametrize(
    "content_range", ["abc", "10-5", "-5", "5-", "0-", "bytes=x-y", "1-2-3", "0-99999999999999999999", "١-٢"]
)
def test_bad_content_range(client: httpx.Client, content_range: str):
    name = repo("bad-cr")
    location = start_upload(client, name)
    assert patch_chunk(client, location, b"x" * 10, 0).status_code == 202
    r = client.patch(location, content=b"y" * 5, headers={"Content-Range": content_range.encode()})
    assert_error(r, 416 if r.status_code == 416 else 400, "RANGE_INVALID", "BLOB_UPLOAD_INVALID", "SIZE_INVALID")
    # Nothing was appended.
    assert client.get(location).headers["Range"] == "0-9"


def test_content_range_disagreeing_with_length(client: httpx.Client):
    name = repo("bad-cr-len")
    location = start_upload(client, name)
    r = client.patch(location, content=b"y" * 5, headers={"Content-Range": "0-9"})
    assert r.status_code in (400, 416)
    assert_error(r, r.status_code, "RANGE_INVALID", "BLOB_UPLOAD_INVALID", "SIZE_INVALID")
    r = client.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-0"
    data = b"z" * 10
    assert patch_chunk(client, location, data, 0).status_code == 202
    assert client.put(location, params={"digest": digest(data)}).status_code == 201


@pytest.mark.parametrize(
    "header", ["bytes=0-1,3-4", "bytes=5-2", "bytes=abc", "items=0-5", "bytes=--1", "bytes", "0-5"]
)
def test_invalid_range_header_is_ignored(client: httpx.Client, header: str):
    """RFC 9110: a Range that is not a valid single byte range is ignored (200, whole body),
    or at worst refused with the registry's JSON error, never a bare 416."""
    name = repo("bad-range")
    data = os.urandom(100)
    dgst = push_blob(client, name, data)
    r = client.get(f"/v2/{name}/blobs/{dgst}", headers={"Range": header})
    if r.status_code == 200:
        assert r.content == data
    else:
        assert_error(r, 416, "RANGE_INVALID")


def test_range_on_empty_blob(client: httpx.Client):
    name = repo("bad-range-empty")
    dgst = push_blob(client, name, b"")
    for header in ("bytes=0-", "bytes=0-0", "bytes=-1"):
        r = client.get(f"/v2/{name}/blobs/{dgst}", headers={"Range": header})
        assert_error(r, 416, "RANGE_INVALID")


def test_unknown_upload_ids(client: httpx.Client):
    name = repo("bad-upload")
    other = repo("bad-upload-other")
    foreign = start_upload(client, other).rsplit("/", 1)[1].split("?")[0]
    for upload_id in (str(uuid.uuid4()), "x", "0" * 36, "a" * 200, foreign, "%2e%2e", "%2E"):
        location = f"/v2/{name}/blobs/uploads/{upload_id}"
        assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(patch_chunk(client, location, b"abc", 0), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(client.patch(location, content=b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(
            client.put(location, params={"digest": digest(b"abc")}, content=b"abc"), 404, "BLOB_UPLOAD_UNKNOWN"
        )
        assert_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    # The other repository's session is untouched by the attempts through ``name``.
    r = client.get(f"/v2/{other}/blobs/uploads/{foreign}")
    assert r.status_code == 204


def test_truncated_monolithic_upload(client: httpx.Client, registry: RegistryServer):
    """The digest given is that of the bytes actually sent: only the declared length tells."""
    name = repo("bad-trunc-mono")
    sent = os.urandom(50_000)
    dgst = digest(sent)
    send_truncated(registry.host, "POST", f"/v2/{name}/blobs/uploads/?digest={dgst}", 100_000, sent)
    assert client.get("/v2/").status_code == 200
    assert client.head(f"/v2/{name}/blobs/{dgst}").status_code == 404
    assert not blob_path(registry.data_dir, dgst).exists()
    push_blob(client, name, sent)


def test_truncated_put_and_patch(client: httpx.Client, registry: RegistryServer):
    name = repo("bad-trunc-put")
    data = os.urandom(40_000)
    location = start_upload(client, name)
    path = location.split(registry.host, 1)[-1]
    sep = "&" if "?" in path else "?"
    dgst = digest(data[:20_000])
    send_truncated(registry.host, "PUT", f"{path}{sep}digest={dgst}", 40_000, data[:20_000])
    assert client.get("/v2/").status_code == 200
    assert client.head(f"/v2/{name}/blobs/{dgst}").status_code == 404
    assert not blob_path(registry.data_dir, dgst).exists()

    # A truncated PATCH: whatever the session kept, it is a prefix, and the upload can go on.
    name = repo("bad-trunc-patch")
    location = start_upload(client, name)
    path = location.split(registry.host, 1)[-1]
    send_truncated(registry.host, "PATCH", path, 40_000, data[:20_000])
    r = client.get(location)
    if r.status_code == 204:
        offset = int(r.headers["Range"].split("-")[1]) + 1 if r.headers["Range"] != "0-0" else 0
        assert offset <= 20_000
        if offset:
            rest = data[offset:]
            assert patch_chunk(client, location, rest, offset).status_code == 202
        else:
            assert patch_chunk(client, location, data, 0).status_code == 202
        r = client.put(location, params={"digest": digest(data)})
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/{name}/blobs/{digest(data)}").content == data
    else:
        assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    assert client.head(f"/v2/{name}/blobs/{digest(data[:20_000])}").status_code == 404


def test_truncated_manifest(client: httpx.Client, registry: RegistryServer, image_repo):
    """The partial body is itself a complete, valid manifest: still nothing may be stored."""
    name, manifest = image_repo
    content = encode(manifest)
    send_truncated(registry.host, "PUT", f"/v2/{name}/manifests/v1", len(content) + 100, content, OCI_MANIFEST)
    assert client.get("/v2/").status_code == 200
    assert_error(client.get(f"/v2/{name}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert client.head(f"/v2/{name}/manifests/{digest(content)}").status_code == 404


@pytest.mark.parametrize("n", ["-1", "abc", "1.5", "1e3", " 1", "0x10", "99999999999999999999", "²", "١"])
def test_invalid_n(client: httpx.Client, n: str):
    name = repo("bad-n")
    push_image(client, name, "v1")
    assert_error(client.get(f"/v2/{name}/tags/list", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")
    assert_error(client.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")


@pytest.mark.parametrize("tag", ["-lead", ".dot", "a" * 129, "a/b", "tag!", "ta g", "é"])
def test_bad_tags(client: httpx.Client, image_repo, tag: str):
    name, manifest = image_repo
    r = client.put(f"/v2/{name}/manifests/{tag}", content=encode(manifest), headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code in (400, 404), r.text
    assert_error(r, r.status_code, "MANIFEST_INVALID", "NAME_INVALID", "TAG_INVALID", "UNSUPPORTED")
    dgst = digest(encode(manifest))
    r = put_manifest(client, name, dgst, manifest, tag=tag)
    assert_error(r, 400, "MANIFEST_INVALID", "TAG_INVALID")
    # Nothing was stored by the refused request.
    assert client.head(f"/v2/{name}/manifests/{dgst}").status_code == 404


def test_trailing_newline_tag_is_refused(client: httpx.Client, image_repo):
    """``$`` in a regular expression also matches before a final newline: ``latest\\n`` is no tag."""
    name, manifest = image_repo
    r = put_manifest(client, name, "latest%0A", manifest)
    assert_error(r, 400, "MANIFEST_INVALID", "TAG_INVALID")
    r = put_manifest(client, name, digest(encode(manifest)), manifest, tag="x\n")
    assert_error(r, 400, "MANIFEST_INVALID", "TAG_INVALID")
    r = client.get(f"/v2/{name}/tags/list")
    assert r.status_code == 404 or r.json()["tags"] == [], r.text


def test_trailing_newline_digest_is_refused(client: httpx.Client):
    name = repo("bad-nl-digest")
    data = os.urandom(64)
    dgst = digest(data)
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": dgst + "\n"}, content=data)
    assert_error(r, 400, "DIGEST_INVALID")
    push_blob(client, name, data)
    assert_error(client.get(f"/v2/{name}/blobs/{dgst}%0A"), 400, "DIGEST_INVALID")


def test_unknown_routes_and_methods(client: httpx.Client):
    name = repo("bad-route")
    for method, path in (
        ("GET", f"/v2/{name}/nothing-here"),
        ("GET", "/v2/_nothing"),
        ("POST", f"/v2/{name}/manifests/latest"),
        ("PATCH", f"/v2/{name}/manifests/latest"),
        ("POST", f"/v2/{name}/tags/list"),
        ("PUT", f"/v2/{name}/blobs/{GOOD_DIGEST}"),
    ):
        r = client.request(method, path)
        assert 400 <= r.status_code < 500, (method, path, r.status_code)
        assert_error(r, r.status_code)


def test_garbage_request_line(registry: RegistryServer, client: httpx.Client):
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET /v2/ HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ):
        try:
            status, _, _ = raw_request(registry.host, raw, timeout=10)
            assert status < 500
        except (OSError, IndexError, ValueError):
            pass  # closing the connection is a fine answer to noise
    assert client.get("/v2/").status_code == 200


def test_manifest_referencing_blob_with_wrong_media_type_family(client: httpx.Client):
    """A layer listed with a config media type is still just a blob reference: accepted if present."""
    name = repo("bad-family")
    image = make_image(layers=1)
    for blob in image.blobs:
        push_blob(client, name, blob)
    manifest = dict(image.manifest)
    manifest["layers"] = [descriptor(OCI_CONFIG, image.layers[0])]
    assert put_manifest(client, name, "v1", manifest).status_code == 201
    manifest["layers"] = [descriptor(OCI_LAYER, image.layers[0])]
    assert put_manifest(client, name, "v2", manifest).status_code == 201


@pytest.mark.parametrize("path", ["/v2/_catalog", "/v2/nul-input/tags/list"])
def test_nul_characters_in_pagination_are_not_a_server_error(client: httpx.Client, path: str):
    """SQLite compares such a ``last``; PostgreSQL refuses NUL in text. Either way, no 500."""
    push_image(client, "nul-input", "v1")
    r = client.get(path, params={"last": "a\x00b", "n": "5"})
    assert r.status_code in (200, 400), r.text
    assert r.headers["Content-Type"].startswith("application/json")
