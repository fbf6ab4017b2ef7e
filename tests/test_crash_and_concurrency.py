"""Crashes (SIGKILL), graceful stops (SIGTERM) and concurrent pushes against a real process."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.backends import blob_key, read_stored, stored_keys, uses_s3
from tests.oci import (
    OCI_MANIFEST,
    assert_error,
    assert_no_traceback,
    digest,
    make_image,
    patch_chunk,
    push_blob,
    push_blob_chunked,
    push_manifest,
    range_end,
    repo,
    start_upload,
)
from tests.server import RegistryServer

pytestmark = pytest.mark.core

MiB = 1024 * 1024


def _client(server: RegistryServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120)


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _received(client: httpx.Client, location: str) -> int:
    r = client.get(location)
    assert r.status_code == 204, r.text
    return 0 if r.headers["Range"] == "0-0" else range_end(r)


def _arrived(client: httpx.Client, location: str, size: int) -> bool:
    """The server is taking the body of a PATCH in flight: it holds ``size`` bytes of it. On S3 a
    session's offset moves only when a request saves it (at its end, and every 64 MiB of a long
    one), so there the sign is another request being answered (``/metrics`` counts itself)."""
    if not uses_s3():
        return _received(client, location) >= size
    metrics = client.get("/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("dockyard_http_requests_in_flight"))
    return float(line.split()[-1]) >= 2


class StreamedPatch:
    """A PATCH without Content-Range whose body is sent from a thread: ``head`` at once, then it
    waits for ``release`` and sends ``tail`` in ``pieces`` pieces, ``delay`` seconds apart."""

    def __init__(
        self, server: RegistryServer, location: str, head: bytes, tail: bytes, pieces: int = 1, delay: float = 0.0
    ) -> None:
        self.server, self.location = server, location
        self.head, self.tail, self.pieces, self.delay = head, tail, pieces, delay
        self.head_sent = threading.Event()
        self.release = threading.Event()
        self.response: httpx.Response | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _body(self) -> Iterator[bytes]:
        for i in range(0, len(self.head), MiB):
            yield self.head[i : i + MiB]
        self.head_sent.set()
        self.release.wait(120)
        step = -(-len(self.tail) // self.pieces) if self.tail else 1
        for i in range(0, len(self.tail), step):
            if self.delay:
                time.sleep(self.delay)
            yield self.tail[i : i + step]

    def _run(self) -> None:
        try:
            with _client(self.server) as c:
                self.response = c.patch(
                    self.location, content=self._body(), headers={"Content-Type": "application/octet-stream"}
                )
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc

    def join(self) -> None:
        self.release.set()
        self.thread.join(120)
        assert not self.thread.is_alive()


# -- (a) crashes --------------------------------------------------------------------------------


def test_chunked_upload_resumes_after_sigkill(fresh_registry: RegistryServer):
    name = repo("crash-chunked")
    data = os.urandom(5 * MiB + 123)
    with _client(fresh_registry) as c:
        location = start_upload(c, name)
        for start in range(0, 3 * MiB, MiB):
            r = patch_chunk(c, location, data[start : start + MiB], start)
            assert r.status_code == 202, r.text
            location = r.headers["Location"]

    fresh_registry.kill()
    fresh_registry.start()

    with _client(fresh_registry) as c:
        r = c.get(location)
        assert r.status_code == 204, r.text
        assert r.headers["Range"] == f"0-{3 * MiB - 1}"
        offset = range_end(r)
        location = r.headers["Location"]
        for start in range(offset, len(data), MiB):
            r = patch_chunk(c, location, data[start : start + MiB], start)
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
        assert c.head(f"/v2/{name}/blobs/{digest(data)}").status_code == 404
        r = c.put(location, params={"digest": digest(data)})
        assert r.status_code == 201, r.text
        pulled = c.get(f"/v2/{name}/blobs/{digest(data)}")
        assert pulled.status_code == 200
        assert pulled.content == data
    assert_no_traceback(fresh_registry.log())


@pytest.mark.parametrize("sent_mib", [6, 72])
def test_sigkill_during_streamed_patch_then_resume(fresh_registry: RegistryServer, sent_mib: int):
    """Kill the server while a long PATCH is mid-body; resume from the Range it reports after the
    restart. 72 MiB crosses the point where a long request saves its hash state on the way."""
    name = repo("crash-stream")
    data = os.urandom((sent_mib + 8) * MiB + 777)
    sent = sent_mib * MiB
    with _client(fresh_registry) as c:
        location = start_upload(c, name)
        patch = StreamedPatch(fresh_registry, location, data[:sent], data[sent:])
        assert patch.head_sent.wait(120)
        # The server has taken (nearly) everything sent so far: a batch may still be in memory. On S3
        # only what a save recorded counts: the 64 MiB saved on the way of the 72 MiB, nothing of 6.
        stored = sent - 2 * MiB if not uses_s3() else sent // (64 * MiB) * (64 * MiB)
        _wait_for(lambda: _received(c, location) >= stored, "the server to store the bytes sent")
        seen = _received(c, location)

    fresh_registry.kill()
    patch.join()
    assert patch.response is None or patch.response.status_code != 202
    fresh_registry.start()

    with _client(fresh_registry) as c:
        r = c.get(location)
        assert r.status_code == 204, r.text
        offset = 0 if r.headers["Range"] == "0-0" else range_end(r)  # nothing recorded yet, on S3
        assert seen <= offset <= sent
        for start in range(offset, len(data), 4 * MiB):
            r = patch_chunk(c, r.headers["Location"], data[start : start + 4 * MiB], start)
            assert r.status_code == 202, r.text
        r = c.put(r.headers["Location"], params={"digest": digest(data)})
        assert r.status_code == 201, r.text
        pulled = c.get(f"/v2/{name}/blobs/{digest(data)}")
        assert pulled.content == data
    assert stored_keys(fresh_registry.data_dir, "uploads") == []
    assert_no_traceback(fresh_registry.log())


def test_committed_blobs_and_manifests_survive_sigkill(fresh_registry: RegistryServer):
    name = repo("crash-durable")
    image = make_image(layers=2, layer_size=300_000)
    with _client(fresh_registry) as c:
        for blob in image.blobs:
            push_blob(c, name, blob)
        push_manifest(c, name, "v1", image.content, OCI_MANIFEST)
    fresh_registry.kill()
    fresh_registry.start()
    with _client(fresh_registry) as c:
        r = c.get(f"/v2/{name}/manifests/v1")
        assert r.status_code == 200 and r.content == image.content
        for blob in image.blobs:
            assert c.get(f"/v2/{name}/blobs/{digest(blob)}").content == blob


# -- (b) concurrent identical pushes ------------------------------------------------------------


@pytest.mark.parametrize("layout", ["same-repo", "own-repos"])
def test_sixteen_clients_push_the_same_image(fresh_registry: RegistryServer, layout: str):
    clients = 16
    base = repo("race")
    image = make_image(layers=3, layer_size=3 * MiB // 2)
    barrier = threading.Barrier(clients)

    def push(i: int) -> str:
        name = base if layout == "same-repo" else f"{base}/c{i}"
        with _client(fresh_registry) as c:
            barrier.wait(60)
            for j, blob in enumerate(image.blobs):
                if (i + j) % 2:
                    push_blob(c, name, blob)
                else:
                    push_blob_chunked(c, name, blob, 512 * 1024)
            return push_manifest(c, name, "latest", image.content, OCI_MANIFEST)

    with ThreadPoolExecutor(clients) as pool:
        digests = list(pool.map(push, range(clients)))
    assert digests == [image.digest] * clients

    keys = [blob_key(fresh_registry.data_dir, digest(blob)) for blob in image.blobs]
    assert stored_keys(fresh_registry.data_dir, "blobs") == sorted(keys)  # one copy each, nothing else
    assert stored_keys(fresh_registry.data_dir, "uploads") == []
    for blob, key in zip(image.blobs, keys, strict=True):
        assert read_stored(fresh_registry.data_dir, key) == blob

    with _client(fresh_registry) as c:
        names = [base] if layout == "same-repo" else [f"{base}/c{i}" for i in range(clients)]
        for name in names:
            r = c.get(f"/v2/{name}/manifests/latest")
            assert r.status_code == 200 and r.content == image.content
            for blob in image.blobs:
                assert c.get(f"/v2/{name}/blobs/{digest(blob)}").content == blob
    assert_no_traceback(fresh_registry.log())


def test_concurrent_patches_on_one_session(fresh_registry: RegistryServer):
    """Racing chunks for one session: exactly one lands at each offset, the rest get 416."""
    name = repo("race-session")
    data = os.urandom(8 * 256 * 1024)
    size = 256 * 1024
    with _client(fresh_registry) as c:
        location = start_upload(c, name)

    def send(start: int) -> int:
        with _client(fresh_registry) as c:
            return patch_chunk(c, location, data[start : start + size], start).status_code

    with ThreadPoolExecutor(8) as pool:
        for start in range(0, len(data), size):
            statuses = list(pool.map(send, [start] * 8))
            assert statuses.count(202) == 1, statuses
            assert set(statuses) <= {202, 416}, statuses
    with _client(fresh_registry) as c:
        r = c.put(location, params={"digest": digest(data)})
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/{name}/blobs/{digest(data)}").content == data
    assert_no_traceback(fresh_registry.log())


# -- (c) no partial blob is ever visible --------------------------------------------------------


def test_head_during_chunked_upload_is_404(client: httpx.Client):
    name = repo("partial-chunked")
    data = os.urandom(4 * 100_000)
    full = digest(data)
    location = start_upload(client, name)
    for start in range(0, len(data), 100_000):
        r = patch_chunk(client, location, data[start : start + 100_000], start)
        assert r.status_code == 202
        location = r.headers["Location"]
        # Neither the whole blob nor what has arrived so far is a blob yet.
        for dgst in (full, digest(data[: start + 100_000])):
            assert client.head(f"/v2/{name}/blobs/{dgst}").status_code == 404
            assert_error(client.get(f"/v2/{name}/blobs/{dgst}"), 404, "BLOB_UNKNOWN", "NAME_UNKNOWN")
    assert client.put(location, params={"digest": full}).status_code == 201
    r = client.head(f"/v2/{name}/blobs/{full}")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))


def test_head_during_streamed_upload_is_404(registry: RegistryServer, client: httpx.Client):
    name = repo("partial-stream")
    data = os.urandom(6 * MiB)
    full = digest(data)
    head = data[: 4 * MiB]
    location = start_upload(client, name)
    patch = StreamedPatch(registry, location, head, data[4 * MiB :], pieces=4)
    assert patch.head_sent.wait(120)
    _wait_for(lambda: _arrived(client, location, 2 * MiB), "part of the body to arrive")
    for dgst in (full, digest(head), digest(data[: _received(client, location)])):
        assert client.head(f"/v2/{name}/blobs/{dgst}").status_code == 404
        assert client.get(f"/v2/{name}/blobs/{dgst}").status_code == 404
    patch.join()
    assert patch.error is None, patch.error
    assert patch.response is not None and patch.response.status_code == 202, patch.response
    assert client.head(f"/v2/{name}/blobs/{full}").status_code == 404
    assert client.put(location, params={"digest": full}).status_code == 201
    r = client.head(f"/v2/{name}/blobs/{full}")
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(data))
    assert client.get(f"/v2/{name}/blobs/{full}").content == data


def test_concurrent_push_and_head_never_sees_partial(fresh_registry: RegistryServer):
    """While many clients upload one blob, any HEAD that succeeds reports the full size."""
    name = repo("partial-race")
    data = os.urandom(4 * MiB)
    dgst = digest(data)
    stop = threading.Event()
    seen: list[tuple[int, str | None]] = []

    def watch() -> None:
        with _client(fresh_registry) as c:
            while not stop.is_set():
                r = c.head(f"/v2/{name}/blobs/{dgst}")
                seen.append((r.status_code, r.headers.get("Content-Length")))
                if r.status_code == 200:
                    pulled = c.get(f"/v2/{name}/blobs/{dgst}").content
                    seen.append((200 if pulled == data else -1, str(len(pulled))))

    def push(i: int) -> str:
        with _client(fresh_registry) as c:
            if i % 2:
                return push_blob(c, name, data)
            return push_blob_chunked(c, name, data, MiB)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(push, range(6))) == [dgst] * 6
    finally:
        stop.set()
        watcher.join(60)
    assert seen and {status for status, _ in seen} <= {200, 404}
    assert all(length == str(len(data)) for status, length in seen if status == 200)
    assert stored_keys(fresh_registry.data_dir, "uploads") == []


# -- (d) graceful stop --------------------------------------------------------------------------


def test_sigterm_drains_in_flight_upload(fresh_registry: RegistryServer):
    name = repo("drain")
    data = os.urandom(3 * MiB)
    head, tail = data[: 2 * MiB], data[2 * MiB :]
    with _client(fresh_registry) as c:
        location = start_upload(c, name)
        patch = StreamedPatch(fresh_registry, location, head, tail, pieces=10, delay=0.1)
        assert patch.head_sent.wait(120)
        _wait_for(lambda: _arrived(c, location, MiB), "the upload to be under way")

    fresh_registry.proc.send_signal(signal.SIGTERM)
    patch.join()  # trickles the rest over about a second, after the signal
    assert patch.error is None, repr(patch.error)
    assert patch.response is not None
    assert patch.response.status_code == 202, patch.response.text
    assert patch.response.headers["Range"] == f"0-{len(data) - 1}"
    assert fresh_registry.proc.wait(60) == 0

    fresh_registry.start()
    with _client(fresh_registry) as c:
        r = c.get(location)
        assert r.status_code == 204 and r.headers["Range"] == f"0-{len(data) - 1}"
        r = c.put(location, params={"digest": digest(data)})
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/{name}/blobs/{digest(data)}").content == data
    assert_no_traceback(fresh_registry.log())


def test_sigterm_exits_zero_when_idle(fresh_registry: RegistryServer):
    assert fresh_registry.stop() == 0
