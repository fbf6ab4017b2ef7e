#!/usr/bin/env python3
"""Push/pull throughput and request-rate benchmark for any OCI distribution registry (no auth).

Usage: ``registry_bench.py URL [--quick] [--json OUT] [--pid SERVER_PID ...]``

Why these phases: a registry's users feel (1) how fast big layers go up, in the two upload forms
clients use (docker/podman stream one PUT, containerd/oras often PATCH in chunks), (2) how fast
they come down, (3) how many manifest and blob existence checks it answers per second, since
every ``pull``/``push`` starts with a burst of those, and (4) how long a re-push of an image that
is already there takes, which is what CI pipelines do all day.

The client is kept cheap because it shares two cores with the server: bodies are prepared and
hashed before any clock starts, sent with ``sendall`` and read with ``readinto``; request-rate
phases use ``wrk`` (C, epoll) when installed and fall back to a threaded Python loop otherwise.
With ``--pid`` the server's CPU seconds per phase are reported too, which stays meaningful even
when the two processes disturb each other. ``--pid`` may be given several times (or as a
comma-separated list): the figure is then the sum over those processes and their descendants,
for a server that is several processes (replicas behind a proxy, a database, an object store).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import (
    EXTRA_HEADERS,
    READ_BUFFER,
    BenchError,
    MiB,
    Target,
    login,
    pull_blob,
    push_chunked,
    push_monolithic,
    request,
    sha256_digest,
    tree_cpu_seconds,
    wait_quiet,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# What docker sends when it resolves a tag: the registry must pick the image manifest.
ACCEPT = ", ".join([
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
])


@dataclass(slots=True)
class Params:
    """Sizes and durations; ``--quick`` shrinks them so a smoke run takes well under a minute."""

    blobs: int = 8
    blob_mib: int = 64
    chunk_mib: int = 8
    concurrency: int = 4
    duration: float = 10.0
    repush_layers: int = 10
    repush_iterations: int = 20

    @classmethod
    def quick(cls) -> Params:
        return cls(blob_mib=16, duration=3.0, repush_iterations=5)


@dataclass(slots=True)
class Results:
    metrics: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    clients: dict[str, str] = field(default_factory=dict)  # rate phase -> load tool used
    background: dict[str, float] = field(default_factory=dict)  # phase -> busy share before it

    def add(self, name: str, value: float, unit: str) -> None:
        self.metrics[name] = round(value, 4)
        self.units[name] = unit


class CpuMeter:
    """CPU seconds spent by the server (``--pid``: those processes and their descendants) and by
    this client (itself plus waited-for children such as wrk) across one phase."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def _client(self) -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def __enter__(self) -> CpuMeter:
        self._server0 = tree_cpu_seconds(self.pids)
        self._client0 = self._client()
        return self

    def __exit__(self, *exc: object) -> None:
        end = tree_cpu_seconds(self.pids)
        self.server = None if end is None or self._server0 is None else end - self._server0
        self.client = self._client() - self._client0


def quiesce(res: Results, label: str) -> None:
    """Before each timed phase: flush dirty pages (so write-back from one phase is not billed to
    the next; dockyard fsyncs every blob, Distribution's filesystem driver does not), then wait a
    bounded time for other processes on the machine to go quiet, recording how busy it was."""
    os.sync()
    busy = wait_quiet()
    res.background[label] = round(busy, 3)
    if busy > 0.2:
        res.notes.append(f"{label}: machine was {busy:.0%} busy with other work when the phase started")


# -- throughput ------------------------------------------------------------------------------


def run_parallel(target: Target, jobs: list[Any], workers: int,
                 work: Callable[[Any, Any, memoryview], None]) -> float:
    """Spread ``jobs`` over ``workers`` threads, each with its own keep-alive connection, start
    them together and return the wall time until the last finishes."""
    lanes = [jobs[i::workers] for i in range(workers)]
    errors: list[BaseException] = []

    def lane(items: list[Any]) -> None:
        conn = target.connect()
        buf = memoryview(bytearray(READ_BUFFER))
        try:
            conn.connect()
            barrier.wait()
            for item in items:
                work(conn, item, buf)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            barrier.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=lane, args=(items,), daemon=True) for items in lanes if items]
    barrier = threading.Barrier(len(threads) + 1)
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def make_blobs(count: int, size: int) -> list[tuple[bytes, str]]:
    """Fresh random bytes every run (so no registry can deduplicate against an earlier run),
    with digests computed here, before any timing."""
    return [(data, sha256_digest(data)) for data in (os.urandom(size) for _ in range(count))]


def bench_push(target: Target, name: str, params: Params, pids: list[int], res: Results,
               blobs: list[tuple[bytes, str]], form: str) -> None:
    chunk = params.chunk_mib * MiB

    def work(conn: Any, item: tuple[bytes, str], _buf: memoryview) -> None:
        data, digest = item
        if form == "monolithic":
            push_monolithic(conn, target, name, data, digest)
        else:
            push_chunked(conn, target, name, data, digest, chunk)

    total = sum(len(d) for d, _ in blobs)
    label = "push_monolithic" if form == "monolithic" else "push_chunked"
    quiesce(res, label)
    with CpuMeter(pids) as cpu:
        elapsed = run_parallel(target, blobs, params.concurrency, work)
    res.add(f"{label}_MiB_s", total / MiB / elapsed, "MiB/s")
    _add_cpu(res, label, cpu, per_gib=total / (1 << 30))


def bench_pull(target: Target, name: str, params: Params, pids: list[int], res: Results,
               blobs: list[tuple[bytes, str]]) -> None:
    """Pull throughput, twice: with wrk (C, sendfile-friendly reads, so the figure is about the
    server and not the Python client sharing its two cores) when installed, and with the
    Python client, which reads and counts every byte once."""
    if shutil.which("wrk"):
        paths = [f"/v2/{name}/blobs/{digest}" for _, digest in blobs]
        quiesce(res, "pull")
        with CpuMeter(pids) as cpu:
            stats = run_wrk_pull(target.base, paths, params.duration, params.concurrency)
        res.add("pull_MiB_s", stats["bytes"] / MiB / stats["seconds"], "MiB/s")
        _add_cpu(res, "pull", cpu, per_gib=stats["bytes"] / (1 << 30))

    def work(conn: Any, item: tuple[bytes, str], buf: memoryview) -> None:
        data, digest = item
        pull_blob(conn, target, name, digest, len(data), buf)

    total = sum(len(d) for d, _ in blobs)
    label = "pull_python" if shutil.which("wrk") else "pull"
    quiesce(res, label)
    with CpuMeter(pids) as cpu:
        elapsed = run_parallel(target, blobs, params.concurrency, work)
    res.add(f"{label}_MiB_s", total / MiB / elapsed, "MiB/s")
    _add_cpu(res, label, cpu, per_gib=total / (1 << 30))


_LUA_PULL = """
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH-PULL %d %d %d\\n", summary.bytes, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def run_wrk_pull(base: str, paths: list[str], duration: float, connections: int) -> dict:
    """GET the blobs round-robin for ``duration`` seconds; wrk discards bodies as it reads."""
    table = "paths = {" + ", ".join(_lua_string(p) for p in paths) + "}\n"
    table += "".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}\n" for k, v in EXTRA_HEADERS.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(table + _LUA_PULL)
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(duration))}s",
             "--timeout", "30s", "-s", script, base + paths[0]],
            capture_output=True, text=True, timeout=duration + 90, check=False,
        )
    finally:
        os.unlink(script)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH-PULL "):
            nbytes, micros, errors = (int(x) for x in line.split()[1:])
            if errors:
                raise BenchError(f"wrk pull: {errors} errors")
            return {"bytes": nbytes, "seconds": micros / 1e6}
    raise BenchError(f"could not parse wrk pull output (exit {out.returncode}): {out.stdout[-800:]}")


def _add_cpu(res: Results, label: str, cpu: CpuMeter, per_gib: float | None = None,
             requests: int | None = None) -> None:
    for who, value in (("server", cpu.server), ("client", cpu.client)):
        if value is None:
            continue
        if per_gib:
            res.add(f"{label}_{who}_cpu_s_per_GiB", value / per_gib, "CPU s/GiB")
        elif requests:
            res.add(f"{label}_{who}_cpu_us_per_req", value / requests * 1e6, "CPU us/req")


# -- small image set-up ----------------------------------------------------------------------


@dataclass(slots=True)
class Image:
    name: str
    tag: str
    manifest: bytes
    digest: str
    blobs: list[tuple[str, int]]  # digest, size of config and layers


def push_image(target: Target, name: str, tag: str, layers: list[bytes]) -> Image:
    """Push a config blob, ``layers`` and an OCI image manifest that references them."""
    nonce = uuid.uuid4().hex
    diff_ids = [sha256_digest(layer) for layer in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"bench.nonce": nonce}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, sort_keys=True).encode()
    blobs = [(config, sha256_digest(config))] + [(layer, d) for layer, d in zip(layers, diff_ids, strict=True)]
    conn = target.connect()
    try:
        for data, digest in blobs:
            push_monolithic(conn, target, name, data, digest)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": blobs[0][1], "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": len(b)} for b, d in blobs[1:]],
        }, indent=3).encode()
        digest = sha256_digest(manifest)
        resp, _ = request(conn, "PUT", f"/v2/{name}/manifests/{tag}", body=manifest,
                          headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
        got = resp.getheader("Docker-Content-Digest")
        if got != digest:
            raise BenchError(f"manifest PUT: Docker-Content-Digest {got!r}, expected {digest}")
    finally:
        conn.close()
    return Image(name, tag, manifest, digest, [(d, len(b)) for b, d in blobs])


def check_headers(target: Target, image: Image, res: Results) -> None:
    """Sanity checks on what the request-rate phases will hammer: a wrong answer served fast is
    not a result, so mismatches are recorded as notes and printed."""
    conn = target.connect()
    try:
        path = f"/v2/{image.name}/manifests/{image.tag}"
        resp, body = request(conn, "GET", path, headers={"Accept": ACCEPT})
        expected = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": image.digest,
                    "Content-Length": str(len(image.manifest))}
        for key, want in expected.items():
            if resp.getheader(key) != want:
                res.notes.append(f"GET manifest: {key}: {resp.getheader(key)!r}, expected {want!r}")
        if body != image.manifest:
            res.notes.append("GET manifest: body differs from the pushed bytes")
        resp, _ = request(conn, "HEAD", path, headers={"Accept": ACCEPT})
        for key, want in expected.items():
            if resp.getheader(key) != want:
                res.notes.append(f"HEAD manifest: {key}: {resp.getheader(key)!r}, expected {want!r}")
        digest, size = image.blobs[1]
        resp, _ = request(conn, "HEAD", f"/v2/{image.name}/blobs/{digest}")
        for key, want in {"Content-Length": str(size), "Docker-Content-Digest": digest}.items():
            if resp.getheader(key) != want:
                res.notes.append(f"HEAD blob: {key}: {resp.getheader(key)!r}, expected {want!r}")
    finally:
        conn.close()


# -- request rate ----------------------------------------------------------------------------


def _lua_string(value: str) -> str:
    return json.dumps(value)  # ASCII JSON strings are valid Lua string literals


_LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, " ..
    "\\"non2xx\\": %d, \\"socket_errors\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def run_wrk(url: str, method: str, headers: dict[str, str], duration: float, connections: int) -> dict:
    """Fixed-duration load with wrk (2 threads, ``connections`` keep-alive connections); the Lua
    script sets the method and headers and prints exact figures from wrk's own histogram."""
    lines = [f"wrk.method = {_lua_string(method)}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + "\n" + _LUA_DONE)
        script = f.name
    try:
        out = subprocess.run(
            ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{max(1, round(duration))}s",
             "--latency", "--timeout", "10s", "-s", script, url],
            capture_output=True, text=True, timeout=duration + 60, check=False,
        )
    finally:
        os.unlink(script)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH-JSON "):
            stats = json.loads(line.removeprefix("BENCH-JSON "))
            return {
                "rps": stats["requests"] / (stats["duration_us"] / 1e6),
                "requests": stats["requests"],
                "p50_ms": stats["p50_us"] / 1000,
                "p99_ms": stats["p99_us"] / 1000,
                "errors": stats["non2xx"] + stats["socket_errors"],
            }
    raise BenchError(f"could not parse wrk output (exit {out.returncode}): {out.stdout[-800:]} {out.stderr[-400:]}")


def run_ab(url: str, method: str, headers: dict[str, str], duration: float, connections: int) -> dict:
    """Fixed-duration load with ApacheBench for HEAD: wrk's parser waits for the body a
    ``Content-Length`` announces, so it never completes a HEAD. ab is single-threaded C with
    HTTP/1.0 keep-alive (``-k``); its CSV export gives percentiles with microsecond resolution."""
    if method != "HEAD":
        raise ValueError("ab is used for HEAD only")
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as csv:
        cmd = ["ab", "-k", "-i", "-q", "-c", str(connections), "-t", str(max(1, round(duration))),
               "-n", "10000000", "-s", "10", "-e", csv.name]
        for key, value in headers.items():
            cmd += ["-H", f"{key}: {value}"]
        out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=duration + 60, check=False)
        percentiles = dict(line.split(",", 1) for line in csv.read().splitlines()[1:] if "," in line)

    def field(label: str) -> str:
        for line in out.stdout.splitlines():
            if line.startswith(label):
                return line.split(":", 1)[1].split()[0]
        raise BenchError(f"ab output has no {label!r} (exit {out.returncode}): {out.stdout[-600:]} {out.stderr[-400:]}")

    done = int(field("Complete requests"))
    elapsed = float(field("Time taken for tests"))
    failed = int(field("Failed requests"))
    non2xx = 0
    for line in out.stdout.splitlines():
        if line.startswith("Non-2xx responses"):
            non2xx = int(line.split(":", 1)[1])
    return {"rps": done / elapsed, "requests": done, "p50_ms": float(percentiles["50"]),
            "p99_ms": float(percentiles["99"]), "errors": failed + non2xx}


def run_python_load(target: Target, path: str, method: str, headers: dict[str, str], duration: float,
                    connections: int) -> dict:
    """Fallback when neither wrk nor ab is there: one thread drives ``connections`` raw
    keep-alive sockets through a selector (one request in flight on each), which costs far less
    CPU than threads contending for the GIL. Responses are small; only status and
    Content-Length are parsed."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    raw = head.encode()
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, list[Any]] = {}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    for _ in range(connections):
        sock = socket.create_connection((target.host, target.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(raw)
        state[sock] = [time.perf_counter(), b""]
        sel.register(sock, selectors.EVENT_READ)
    start = time.perf_counter()
    while state:
        for key, _ in sel.select(timeout=10):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            entry = state[sock]
            data = sock.recv(65536)
            if not data:
                raise BenchError(f"{method} {path}: server closed the connection")
            buf = entry[1] + data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                entry[1] = buf
                continue
            length = 0
            if method != "HEAD":
                for line in buf[:end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
            if len(buf) < end + 4 + length:
                entry[1] = buf
                continue
            now = time.perf_counter()
            latencies.append(now - entry[0])
            if not buf.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                errors += 1
            entry[1] = buf[end + 4 + length:]
            if now < deadline:
                entry[0] = now
                sock.sendall(raw)
            else:
                sel.unregister(sock)
                sock.close()
                del state[sock]
    elapsed = time.perf_counter() - start
    sel.close()
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {"rps": len(latencies) / elapsed, "requests": len(latencies), "p50_ms": pick(0.50),
            "p99_ms": pick(0.99), "errors": errors}


def rate_client(method: str, choice: str) -> str:
    """wrk for GET, ab for HEAD (see run_ab), the Python selector loop when a tool is missing."""
    if choice != "auto":
        return choice
    if method == "HEAD":
        return "ab" if shutil.which("ab") else "python"
    return "wrk" if shutil.which("wrk") else "python"


def bench_rate(target: Target, params: Params, pids: list[int], res: Results, label: str, path: str,
               method: str, headers: dict[str, str], client: str) -> None:
    quiesce(res, label)
    with CpuMeter(pids) as cpu:
        if client == "wrk":
            stats = run_wrk(target.base + path, method, headers, params.duration, params.concurrency)
        elif client == "ab":
            stats = run_ab(target.base + path, method, headers, params.duration, params.concurrency)
        else:
            stats = run_python_load(target, path, method, headers, params.duration, params.concurrency)
    if not stats["requests"]:
        raise BenchError(f"{label}: no request completed with {client}")
    res.clients[label] = client
    res.add(f"{label}_rps", stats["rps"], "req/s")
    res.add(f"{label}_p50_ms", stats["p50_ms"], "ms")
    res.add(f"{label}_p99_ms", stats["p99_ms"], "ms")
    _add_cpu(res, label, cpu, requests=stats["requests"])
    if stats["errors"]:
        res.notes.append(f"{label}: {stats['errors']} of {stats['requests']} requests failed (non-2xx or socket)")


# -- re-push ---------------------------------------------------------------------------------


def bench_repush(target: Target, image: Image, params: Params, pids: list[int], res: Results) -> None:
    """What ``docker push`` does when every layer is already there: HEAD each blob (200 means
    skip the upload), then PUT the manifest. Sequential on one fresh keep-alive connection per
    push (docker overlaps up to 3 HEADs, so this is the latency sum, an upper bound)."""
    times: list[float] = []
    quiesce(res, "repush")
    with CpuMeter(pids) as cpu:
        for _ in range(params.repush_iterations):
            t0 = time.perf_counter()
            conn = target.connect()
            try:
                for digest, size in image.blobs:
                    resp, _ = request(conn, "HEAD", f"/v2/{image.name}/blobs/{digest}")
                    if resp.getheader("Content-Length") != str(size):
                        raise BenchError(f"HEAD blob {digest}: Content-Length {resp.getheader('Content-Length')}")
                resp, _ = request(conn, "PUT", f"/v2/{image.name}/manifests/{image.tag}", body=image.manifest,
                                  headers={"Content-Type": OCI_MANIFEST}, expect=(201,))
            finally:
                conn.close()
            times.append(time.perf_counter() - t0)
    res.add("repush_ms", statistics.median(times) * 1000, "ms")
    res.add("repush_min_ms", min(times) * 1000, "ms")
    _add_cpu(res, "repush", cpu, requests=len(times) * (len(image.blobs) + 1))


# -- driver ----------------------------------------------------------------------------------


def run(url: str, params: Params, pids: list[int], client_choice: str = "auto",
        credentials: tuple[str, str] | None = None) -> dict:
    target = Target.parse(url)
    res = Results()
    name = f"bench/run-{uuid.uuid4().hex[:10]}"
    if credentials:
        login(target, *credentials, [f"repository:{name}:pull,push"])
    print(f"registry_bench: {target.base} repository {name}, "
          f"{params.blobs} x {params.blob_mib} MiB blobs, {params.concurrency} clients, "
          f"rate clients: GET {rate_client('GET', client_choice)}, HEAD {rate_client('HEAD', client_choice)}",
          flush=True)

    conn = target.connect()
    try:
        request(conn, "GET", "/v2/")
    finally:
        conn.close()

    step = lambda what: print(f"  {what} ...", flush=True)  # noqa: E731
    step("set-up: small image and re-push image (also warms the server up)")
    small = push_image(target, name, "small", [os.urandom(4096)])
    repush = push_image(target, name, "repush", [os.urandom(32 * 1024) for _ in range(params.repush_layers)])
    check_headers(target, small, res)

    size = params.blob_mib * MiB
    step(f"generating {2 * params.blobs * params.blob_mib} MiB of random data and digests (untimed)")
    mono = make_blobs(params.blobs, size)
    chunked = make_blobs(params.blobs, size)

    step("push, monolithic (POST + PUT with body)")
    bench_push(target, name, params, pids, res, mono, "monolithic")
    step(f"push, chunked (POST + PATCH {params.chunk_mib} MiB chunks + PUT)")
    bench_push(target, name, params, pids, res, chunked, "chunked")
    del chunked
    step("pull")
    bench_pull(target, name, params, pids, res, mono)
    del mono

    layer_digest = small.blobs[1][0]
    rate_phases = [
        ("manifest_get", f"/v2/{name}/manifests/small", "GET", {"Accept": ACCEPT}),
        ("manifest_head", f"/v2/{name}/manifests/small", "HEAD", {"Accept": ACCEPT}),
        ("blob_head", f"/v2/{name}/blobs/{layer_digest}", "HEAD", {}),
        ("blob_get_4k", f"/v2/{name}/blobs/{layer_digest}", "GET", {}),
    ]
    for label, path, method, headers in rate_phases:
        step(f"{label}: {method} for {params.duration:g} s at {params.concurrency} connections")
        bench_rate(target, params, pids, res, label, path, method, {**EXTRA_HEADERS, **headers},
                   rate_client(method, client_choice))

    step(f"re-push of a {params.repush_layers}-layer image whose blobs all exist, x{params.repush_iterations}")
    bench_repush(target, repush, params, pids, res)
    return {
        "url": target.base,
        "repository": name,
        "params": {k: getattr(params, k) for k in Params.__slots__},
        "rate_clients": res.clients,
        "background_busy": res.background,
        "server_pids": pids,
        "metrics": res.metrics,
        "units": res.units,
        "notes": res.notes,
    }


def print_table(report: dict) -> None:
    metrics, units = report["metrics"], report["units"]
    width = max(len(k) for k in metrics)
    print(f"\n{'metric':<{width}}  {'value':>12}  unit")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 10}")
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value:>12.3f}  {units[key]}")
    for note in report["notes"]:
        print(f"NOTE: {note}")


def _pids(value: str) -> list[int]:
    return [int(p) for p in value.split(",") if p.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="registry base URL, e.g. http://127.0.0.1:5000 (loopback only)")
    parser.add_argument("--quick", action="store_true", help="16 MiB blobs, 3 s rate phases")
    parser.add_argument("--json", metavar="OUT", help="write the figures to this JSON file")
    parser.add_argument("--pid", type=_pids, action="extend", default=[], metavar="PID[,PID...]",
                        help="server process id(s), repeatable: adds server CPU per phase (summed, with descendants)")
    parser.add_argument("--duration", type=float, help="seconds per request-rate phase")
    parser.add_argument("--rate-client", choices=["auto", "wrk", "ab", "python"], default="auto",
                        help="load tool for request-rate phases (auto: wrk for GET, ab for HEAD)")
    parser.add_argument("--user", help="with token authentication: log in as this user (GET /token)")
    parser.add_argument("--password", default="", help="the user's password or access token")
    args = parser.parse_args(argv)
    params = Params.quick() if args.quick else Params()
    if args.duration:
        params.duration = args.duration
    try:
        credentials = (args.user, args.password) if args.user else None
        report = run(args.url, params, args.pid, args.rate_client, credentials)
    except BenchError as exc:
        print(f"registry_bench: FAILED: {exc}", file=sys.stderr)
        return 1
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
