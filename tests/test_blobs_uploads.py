"""Blob uploads (monolithic, POST+PUT, chunked, streamed, mounts) and blob reads, over HTTP."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.oci import (
    assert_error,
    digest,
    patch_chunk,
    push_blob,
    push_blob_chunked,
    repo,
    start_upload,
)

pytestmark = pytest.mark.core


def test_api_root(client: httpx.Client):
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_monolithic_post_with_digest(client: httpx.Client):
    name = repo("mono")
    data = os.urandom(10_000)
    dgst = digest(data)
    r = client.post(
        f"/v2/{name}/blobs/uploads/",
        params={"digest": dgst},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == dgst
    assert r.headers["Location"].endswith(f"/v2/{name}/blobs/{dgst}")
    pulled = client.get(r.headers["Location"])
    assert pulled.status_code == 200
    assert pulled.content == data


def test_monolithic_empty_blob(client: httpx.Client):
    name = repo("mono-empty")
    dgst = push_blob(client, name, b"")
    r = client.head(f"/v2/{name}/blobs/{dgst}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "0"
    assert client.get(f"/v2/{name}/blobs/{dgst}").content == b""


def test_post_then_put_with_body(client: httpx.Client):
    name = repo("postput")
    data = os.urandom(50_000)
    dgst = digest(data)
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    assert f"/v2/{name}/blobs/uploads/" in location
    r = client.put(
        location, params={"digest": dgst}, content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == dgst
    assert r.headers["Location"].endswith(f"/v2/{name}/blobs/{dgst}")
    assert client.get(f"/v2/{name}/blobs/{dgst}").content == data


def test_chunked_patch_with_content_range(client: httpx.Client):
    name = repo("chunked")
    data = os.urandom(300_000)
    dgst = digest(data)
    r = client.post(f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    uuid = r.headers["Docker-Upload-UUID"]
    assert uuid and uuid in location
    assert int(r.headers["OCI-Chunk-Min-Length"]) > 0

    size = 100_000
    for start in range(0, len(data), size):
        chunk = data[start : start + size]
        r = patch_chunk(client, location, chunk, start)
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{start + len(chunk) - 1}"
        assert r.headers["Docker-Upload-UUID"] == uuid
        assert f"/v2/{name}/blobs/uploads/" in r.headers["Location"]
        location = r.headers["Location"]

    # Not visible before the closing PUT.
    assert client.head(f"/v2/{name}/blobs/{dgst}").status_code == 404
    r = client.put(location, params={"digest": dgst})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == dgst
    assert client.get(f"/v2/{name}/blobs/{dgst}").content == data
    # The session is gone once the blob is committed.
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_chunked_with_last_chunk_in_put(client: httpx.Client):
    name = repo("chunked-put")
    data = os.urandom(20_000)
    dgst = digest(data)
    location = start_upload(client, name)
    r = patch_chunk(client, location, data[:12_000], 0)
    assert r.status_code == 202
    r = client.put(
        r.headers["Location"],
        params={"digest": dgst},
        content=data[12_000:],
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"12000-{len(data) - 1}",
        },
    )
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{name}/blobs/{dgst}").content == data


def test_streamed_patch_without_content_range(client: httpx.Client):
    """Docker sends the whole layer as one PATCH with chunked transfer encoding, no Content-Range."""
    name = repo("streamed")
    data = os.urandom(3 * 1024 * 1024 + 17)
    dgst = digest(data)
    location = start_upload(client, name)

    def body():
        for i in range(0, 2 * 1024 * 1024, 64 * 1024):
            yield data[i : i + 64 * 1024]

    r = client.patch(location, content=body(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{2 * 1024 * 1024 - 1}"
    # A second streamed PATCH continues where the first ended.
    r = client.patch(
        r.headers["Location"], content=data[2 * 1024 * 1024 :], headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.put(r.headers["Location"], params={"digest": dgst})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{name}/blobs/{dgst}").content == data


def test_out_of_order_chunk_is_416_and_upload_continues(client: httpx.Client):
    name = repo("ooo")
    data = os.urandom(3000)
    dgst = digest(data)
    location = start_upload(client, name)
    r = patch_chunk(client, location, data[:1000], 0)
    assert r.status_code == 202
    location = r.headers["Location"]

    # A gap, an overlap and a restart from zero are all refused with the current Range.
    for start in (2000, 500, 0):
        r = patch_chunk(client, location, data[start : start + 1000], start)
        assert_error(r, 416, "RANGE_INVALID", "BLOB_UPLOAD_INVALID")
        assert r.headers["Range"] == "0-999"
        assert f"/v2/{name}/blobs/uploads/" in r.headers["Location"]

    status = client.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-999"
    r = patch_chunk(client, location, data[1000:2000], 1000)
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == "0-1999"
    r = patch_chunk(client, r.headers["Location"], data[2000:], 2000)
    assert r.status_code == 202
    r = client.put(r.headers["Location"], params={"digest": dgst})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{name}/blobs/{dgst}").content == data


def test_upload_status(client: httpx.Client):
    name = repo("status")
    location = start_upload(client, name)
    r = patch_chunk(client, location, b"a" * 1234, 0)
    assert r.status_code == 202
    r = client.get(r.headers["Location"])
    assert r.status_code == 204
    assert r.headers["Range"] == "0-1233"
    assert r.headers["Docker-Upload-UUID"]
    assert f"/v2/{name}/blobs/uploads/" in r.headers["Location"]


def test_cancel_upload(client: httpx.Client):
    name = repo("cancel")
    location = start_upload(client, name)
    assert patch_chunk(client, location, b"abc", 0).status_code == 202
    r = client.delete(location)
    assert r.status_code == 204
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(patch_chunk(client, location, b"def", 3), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.put(location, params={"digest": digest(b"abc")}), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert client.head(f"/v2/{name}/blobs/{digest(b'abc')}").status_code == 404


def test_cross_repo_mount(client: httpx.Client):
    source, target = repo("mount-src"), repo("mount-dst")
    data = os.urandom(5000)
    dgst = push_blob(client, source, data)
    assert client.head(f"/v2/{target}/blobs/{dgst}").status_code == 404
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": dgst, "from": source})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/v2/{target}/blobs/{dgst}")
    assert r.headers["Docker-Content-Digest"] == dgst
    assert client.get(f"/v2/{target}/blobs/{dgst}").content == data


def test_mount_without_from(client: httpx.Client):
    source, target = repo("mount-any-src"), repo("mount-any-dst")
    data = os.urandom(5000)
    dgst = push_blob(client, source, data)
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": dgst})
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"/v2/{target}/blobs/{dgst}")
    assert client.get(f"/v2/{target}/blobs/{dgst}").content == data


@pytest.mark.parametrize("case", ["unknown-blob", "not-in-source"])
def test_mount_falls_back_to_upload(client: httpx.Client, case: str):
    source, target = repo("mount-fb-src"), repo("mount-fb-dst")
    data = os.urandom(2000)
    dgst = digest(data)
    if case == "not-in-source":
        push_blob(client, repo("elsewhere"), data)  # exists, but not in ``source``
        push_blob(client, source, os.urandom(10))
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": dgst, "from": source})
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    assert f"/v2/{target}/blobs/uploads/" in location
    assert client.head(f"/v2/{target}/blobs/{dgst}").status_code == 404
    r = client.put(
        location, params={"digest": dgst}, content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{target}/blobs/{dgst}").content == data


def test_sha512_monolithic(client: httpx.Client):
    name = repo("sha512")
    data = os.urandom(7000)
    dgst = push_blob(client, name, data, "sha512")
    assert dgst.startswith("sha512:") and len(dgst) == 7 + 128
    r = client.get(f"/v2/{name}/blobs/{dgst}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == dgst


def test_sha512_chunked(client: httpx.Client):
    name = repo("sha512-chunked")
    data = os.urandom(250_000)
    dgst = push_blob_chunked(client, name, data, 64_000, "sha512")
    r = client.get(f"/v2/{name}/blobs/{dgst}")
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == dgst
    # The same bytes under sha256 are a different blob, not yet pushed here.
    assert client.head(f"/v2/{name}/blobs/{digest(data)}").status_code == 404


def test_sha512_wrong_digest(client: httpx.Client):
    name = repo("sha512-bad")
    data = os.urandom(1000)
    wrong = digest(data + b"x", "sha512")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": wrong}, content=data)
    assert_error(r, 400, "DIGEST_INVALID")
    assert client.head(f"/v2/{name}/blobs/{wrong}").status_code == 404
    assert client.head(f"/v2/{name}/blobs/{digest(data, 'sha512')}").status_code == 404


def test_blob_get_and_head(client: httpx.Client):
    name = repo("gethead")
    data = os.urandom(12345)
    dgst = push_blob(client, name, data)
    r = client.head(f"/v2/{name}/blobs/{dgst}")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == dgst
    assert r.headers["Content-Length"] == str(len(data))
    assert r.content == b""
    r = client.get(f"/v2/{name}/blobs/{dgst}")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == dgst
    assert r.headers["Content-Length"] == str(len(data))
    assert r.content == data

    unknown = digest(b"never pushed " + os.urandom(8))
    assert_error(client.get(f"/v2/{name}/blobs/{unknown}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/{name}/blobs/{unknown}").status_code == 404
    # A blob is visible only in the repositories it was pushed or mounted into.
    assert_error(client.get(f"/v2/{repo('other')}/blobs/{dgst}"), 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")


def test_range_requests(client: httpx.Client):
    name = repo("range")
    data = os.urandom(1000)
    dgst = push_blob(client, name, data)
    url = f"/v2/{name}/blobs/{dgst}"

    cases = {
        "bytes=0-99": (0, 99),
        "bytes=10-19": (10, 19),
        "bytes=900-": (900, 999),
        "bytes=990-5000": (990, 999),
        "bytes=-10": (990, 999),
        "bytes=-5000": (0, 999),
        "bytes=999-999": (999, 999),
    }
    for header, (start, end) in cases.items():
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, (header, r.status_code, r.text)
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/1000", header
        assert r.content == data[start : end + 1], header
        assert r.headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=5000-6000", "bytes=-0"])
def test_range_unsatisfiable(client: httpx.Client, header: str):
    name = repo("range416")
    data = os.urandom(1000)
    dgst = push_blob(client, name, data)
    r = client.get(f"/v2/{name}/blobs/{dgst}", headers={"Range": header})
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Content-Range"] == "bytes */1000"


def test_blob_delete(client: httpx.Client):
    name = repo("delete")
    data = os.urandom(100)
    dgst = push_blob(client, name, data)
    other = repo("delete-other")
    push_blob(client, other, data)
    r = client.delete(f"/v2/{name}/blobs/{dgst}")
    assert r.status_code == 202
    assert_error(client.get(f"/v2/{name}/blobs/{dgst}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/{name}/blobs/{dgst}").status_code == 404
    assert_error(client.delete(f"/v2/{name}/blobs/{dgst}"), 404, "BLOB_UNKNOWN")
    # Another repository holding the same bytes is not affected.
    assert client.get(f"/v2/{other}/blobs/{dgst}").content == data
    # And it can be pushed again.
    push_blob(client, name, data)
    assert client.get(f"/v2/{name}/blobs/{dgst}").content == data


@pytest.mark.parametrize("suffix", ["team/app/api", "a/b/c/d/e", "org/blobs/uploads-x", "x/manifests/y"])
def test_multi_segment_names(client: httpx.Client, suffix: str):
    name = f"{repo('ms')}/{suffix}"
    data = os.urandom(3000)
    location = start_upload(client, name)
    assert location.split("/blobs/uploads/")[0].endswith(f"/v2/{name}")
    r = patch_chunk(client, location, data[:1000], 0)
    assert r.status_code == 202
    r = client.get(r.headers["Location"])
    assert r.status_code == 204 and r.headers["Range"] == "0-999"
    r = patch_chunk(client, r.headers["Location"], data[1000:], 1000)
    dgst = digest(data)
    r = client.put(r.headers["Location"], params={"digest": dgst})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{name}/blobs/{dgst}").content == data
    assert client.head(f"/v2/{name}/blobs/{dgst}").headers["Content-Length"] == "3000"

    mirror = f"{repo('ms-mirror')}/{suffix}"
    r = client.post(f"/v2/{mirror}/blobs/uploads/", params={"mount": dgst, "from": name})
    assert r.status_code == 201
    assert client.delete(f"/v2/{name}/blobs/{dgst}").status_code == 202
    assert client.get(f"/v2/{mirror}/blobs/{dgst}").content == data
    other = push_blob(client, name, b"monolithic")
    assert client.get(f"/v2/{name}/blobs/{other}").content == b"monolithic"
