"""Small HTTP and /proc helpers shared by the benchmark scripts.

The client side of a benchmark competes with the server for the same two cores, so everything
here is deliberately thin: ``http.client`` over keep-alive connections, request bodies handed to
``sendall`` as whole buffers (the copy happens in the kernel, without the GIL) and response
bodies read with ``readinto`` into one reused buffer. No third-party HTTP library is needed, so
the scripts also run outside the project's virtualenv.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urljoin, urlsplit

MiB = 1 << 20
READ_BUFFER = 4 * MiB
OCTET = "application/octet-stream"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A registry answered something a conforming registry should not: the run stops."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Target:
    """A registry base URL. Only loopback hosts are accepted: these scripts generate gigabytes
    of load and must never be pointed at a machine by accident."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise SystemExit(f"only plain http:// registry URLs are supported, not {url!r}")
        host = parts.hostname or ""
        if not _is_loopback(host):
            raise SystemExit(f"refusing to load {host!r}: benchmarks target loopback registries only")
        return cls(host, parts.port or 80)

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def connect(self, timeout: float = 600.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def path_of(self, location: str | None) -> str:
        """Resolve an upload ``Location`` (registries send both relative and absolute ones)
        to a path+query on this registry, refusing to follow it anywhere else."""
        if not location:
            raise BenchError("response has no Location header")
        url = urlsplit(urljoin(self.base + "/", location))
        if not _is_loopback(url.hostname or "") or (url.port or 80) != self.port:
            raise BenchError(f"Location points away from the registry under test: {location}")
        return url.path + (f"?{url.query}" if url.query else "")


def with_query(path: str, **params: str) -> str:
    """Append query parameters to a Location that may already carry its own (Distribution's
    ``_state``)."""
    extra = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"{path}{'&' if '?' in path else '?'}{extra}"


def sha256_digest(data: bytes | bytearray | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# Sent with every request: the bearer token when the registry has token authentication on.
EXTRA_HEADERS: dict[str, str] = {}


def login(target: Target, user: str, password: str, scopes: list[str]) -> None:
    """Fetch a token the way docker does (GET /token with basic credentials) for ``scopes`` and
    send it from now on. Tokens live 5 minutes: long enough for one registry_bench run."""
    query = urlencode([("service", "dockyard"), *(("scope", s) for s in scopes)])
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn = target.connect()
    try:
        conn.request("GET", f"/token?{query}", headers={"Authorization": f"Basic {basic}"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise BenchError(f"login as {user}: /token -> {resp.status}: {body[:300]!r}")
    EXTRA_HEADERS["Authorization"] = "Bearer " + json.loads(body)["token"]


def request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: bytes | bytearray | memoryview | Iterable[bytes | bytearray] | None = None,
    headers: dict[str, str] | None = None,
    expect: tuple[int, ...] = (200,),
) -> tuple[http.client.HTTPResponse, bytes]:
    """One request on a keep-alive connection; a status outside ``expect`` raises with the
    registry's error body so a failing run says why."""
    headers = {**EXTRA_HEADERS, **(headers or {})}
    if body is None and method in ("POST", "PUT", "PATCH"):
        headers.setdefault("Content-Length", "0")
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status not in expect:
        raise BenchError(f"{method} {path} -> {resp.status} {resp.reason}: {data[:400]!r}")
    return resp, data


def _check_created(resp: http.client.HTTPResponse, digest: str, what: str) -> None:
    got = resp.getheader("Docker-Content-Digest")
    if got is not None and got != digest:
        raise BenchError(f"{what}: Docker-Content-Digest {got} != pushed {digest}")


def push_monolithic(conn: http.client.HTTPConnection, target: Target, name: str, data: bytes,
                    digest: str) -> None:
    """POST to open a session, then one PUT carrying the whole blob and its digest. This is
    the "monolithic" form every registry supports (the single-POST form is optional)."""
    resp, _ = request(conn, "POST", f"/v2/{name}/blobs/uploads/", expect=(202,))
    location = target.path_of(resp.getheader("Location"))
    resp, _ = request(conn, "PUT", with_query(location, digest=digest), body=data,
                      headers={"Content-Type": OCTET, "Content-Length": str(len(data))}, expect=(201,))
    _check_created(resp, digest, "monolithic push")


def push_chunked(conn: http.client.HTTPConnection, target: Target, name: str, data: bytes, digest: str,
                 chunk: int) -> None:
    """POST, PATCH ``chunk``-sized pieces with ``Content-Range: start-end``, then PUT the digest
    with an empty body: the spec's chunked upload, following each returned Location."""
    resp, _ = request(conn, "POST", f"/v2/{name}/blobs/uploads/", expect=(202,))
    location = target.path_of(resp.getheader("Location"))
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        piece = view[start:start + chunk]
        end = start + len(piece) - 1
        resp, _ = request(conn, "PATCH", location, body=piece, expect=(202,), headers={
            "Content-Type": OCTET, "Content-Range": f"{start}-{end}", "Content-Length": str(len(piece))})
        location = target.path_of(resp.getheader("Location"))
        got_range = resp.getheader("Range")
        if got_range is not None and got_range.removeprefix("bytes=") != f"0-{end}":
            raise BenchError(f"PATCH {start}-{end}: registry reports Range {got_range}, expected 0-{end}")
    resp, _ = request(conn, "PUT", with_query(location, digest=digest), expect=(201,))
    _check_created(resp, digest, "chunked push")


def pull_blob(conn: http.client.HTTPConnection, target: Target, name: str, digest: str, size: int,
              buf: memoryview, hasher: hashlib._Hash | None = None) -> int:
    """GET a blob and discard it into ``buf``; returns bytes read. Redirects are followed
    only to the same loopback registry (Distribution redirects only for cloud drivers)."""
    path = f"/v2/{name}/blobs/{digest}"
    for _ in range(3):
        conn.request("GET", path, headers=EXTRA_HEADERS)
        resp = conn.getresponse()
        if resp.status in (301, 302, 303, 307, 308):
            resp.read()
            path = target.path_of(resp.getheader("Location"))
            continue
        break
    if resp.status != 200:
        raise BenchError(f"GET {path} -> {resp.status}: {resp.read()[:400]!r}")
    total = 0
    while n := resp.readinto(buf):
        if hasher is not None:
            hasher.update(buf[:n])
        total += n
    if total != size:
        raise BenchError(f"GET {path}: read {total} bytes, expected {size}")
    return total


def proc_cpu_seconds(pid: int | None) -> float | None:
    """utime+stime of a process (all threads) from /proc: how much CPU the server spent."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def tree_cpu_seconds(pids: Iterable[int]) -> float | None:
    """CPU seconds used so far by the processes ``pids`` and every descendant of theirs: a
    server that is several processes (replicas, PostgreSQL's backends, nginx's workers) is
    measured whole. Each process counts utime+stime plus cutime+cstime (its children that have
    exited and been waited for), so a child that ends between two readings is neither lost nor
    counted twice. None when one of ``pids`` is gone: then the figure would mean nothing."""
    roots = list(pids)
    if not roots:
        return None
    children: dict[int, list[int]] = {}
    seconds: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        seconds[pid] = sum(int(x) for x in fields[11:15]) / _CLK_TCK
    if any(root not in seconds for root in roots):
        return None
    total, seen, todo = 0.0, set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += seconds.get(pid, 0.0)
        todo.extend(children.get(pid, ()))
    return total


def proc_memory_kib(pid: int) -> dict[str, int] | None:
    """VmRSS and VmHWM (peak RSS) of a process in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def system_busy_fraction(interval: float = 0.5) -> float:
    """Share of all CPUs busy over ``interval`` (from /proc/stat): used to wait for a quiet
    machine before a timed run, since other work on two cores skews every figure."""
    def snapshot() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    total0, idle0 = snapshot()
    time.sleep(interval)
    total1, idle1 = snapshot()
    if total1 == total0:
        return 0.0
    return 1.0 - (idle1 - idle0) / (total1 - total0)


def wait_quiet(threshold: float = 0.2, max_wait: float = 10.0) -> float:
    """Wait (bounded) until the machine is mostly idle before a timed phase: on two shared cores
    any other busy process skews both throughput and latency. Returns the last busy share seen,
    so a phase that had to start anyway can be flagged."""
    deadline = time.monotonic() + max_wait
    busy = system_busy_fraction()
    while busy > threshold and time.monotonic() < deadline:
        busy = system_busy_fraction(1.0)
    return busy
