#!/usr/bin/env python3
"""Peak server memory while one very large blob goes up and comes back down.

Usage: ``rss.py URL --pid SERVER_PID [--size-mib 2048] [--mode stream|chunked] [--json OUT]``

Why: a registry that buffers a request or response body in memory works in every small test
and falls over on the first multi-gigabyte layer (CUDA and model images have them). Memory must
stay flat however big the blob is, so this pushes one 2 GiB blob, pulls it back, and samples
the server's VmRSS every 100 ms (plus the kernel's own high-water mark, VmHWM, which catches a
spike between samples). The client never holds the blob either: bytes come from a generator
that repeats a 32 MiB random block, stamped per chunk so the blob is unique, and the digest is
computed in a first pass over the same generator before anything is sent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from benchlib import (
    OCTET,
    READ_BUFFER,
    BenchError,
    MiB,
    Target,
    proc_memory_kib,
    pull_blob,
    request,
    with_query,
)

BASE_BLOCK = 32 * MiB


class BlobSource:
    """A reproducible stream of ``size`` bytes; two passes yield the same bytes, so the digest
    can be computed before the upload without keeping the data."""

    def __init__(self, size: int, chunk: int) -> None:
        if BASE_BLOCK % chunk:
            raise SystemExit(f"chunk size must divide {BASE_BLOCK // MiB} MiB")
        self.size = size
        self.chunk = chunk
        self.nonce = os.urandom(16)
        self.base = os.urandom(BASE_BLOCK)

    def chunks(self) -> Iterator[bytearray]:
        for index, offset in enumerate(range(0, self.size, self.chunk)):
            length = min(self.chunk, self.size - offset)
            start = offset % BASE_BLOCK
            piece = bytearray(self.base[start:start + length])
            stamp = self.nonce + index.to_bytes(8, "big")
            piece[:len(stamp)] = stamp[:length]
            yield piece

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for piece in self.chunks():
            hasher.update(piece)
        return "sha256:" + hasher.hexdigest()


class Sampler(threading.Thread):
    """Reads /proc/PID/status every ``interval`` seconds and keeps the peak VmRSS per phase."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.phase = "idle"
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self.gone = False
        self.hwm = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        mem = proc_memory_kib(self.pid)
        if mem is None:
            self.gone = True
            return
        self.samples += 1
        rss = mem.get("VmRSS", 0)
        self.hwm = max(self.hwm, mem.get("VmHWM", 0))
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)

    def run(self) -> None:
        while not self._stop_event.is_set() and not self.gone:
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


def push(target: Target, name: str, source: BlobSource, digest: str, mode: str) -> None:
    """``stream``: one PATCH whose 2 GiB body is streamed from the generator, then PUT with
    the digest. ``chunked``: a PATCH per chunk with Content-Range, then the PUT."""
    conn = target.connect()
    try:
        resp, _ = request(conn, "POST", f"/v2/{name}/blobs/uploads/", expect=(202,))
        location = target.path_of(resp.getheader("Location"))
        if mode == "stream":
            resp, _ = request(conn, "PATCH", location, body=source.chunks(), expect=(202,),
                              headers={"Content-Type": OCTET, "Content-Length": str(source.size)})
            location = target.path_of(resp.getheader("Location"))
        else:
            offset = 0
            for piece in source.chunks():
                end = offset + len(piece) - 1
                resp, _ = request(conn, "PATCH", location, body=piece, expect=(202,), headers={
                    "Content-Type": OCTET, "Content-Range": f"{offset}-{end}", "Content-Length": str(len(piece))})
                location = target.path_of(resp.getheader("Location"))
                offset = end + 1
        resp, _ = request(conn, "PUT", with_query(location, digest=digest), expect=(201,))
    finally:
        conn.close()


def run(url: str, pid: int, size_mib: int, chunk_mib: int, mode: str, interval: float, verify: bool) -> dict:
    target = Target.parse(url)
    if proc_memory_kib(pid) is None:
        raise SystemExit(f"no process {pid} (or /proc/{pid}/status is unreadable)")
    source = BlobSource(size_mib * MiB, chunk_mib * MiB)
    name = f"bench/rss-{source.nonce.hex()[:10]}"
    print(f"rss: {target.base} pid {pid}: {size_mib} MiB blob, {mode} upload, sampling every "
          f"{interval * 1000:.0f} ms", flush=True)
    t0 = time.perf_counter()
    digest = source.digest()
    print(f"  digest {digest[:19]}... computed in {time.perf_counter() - t0:.1f} s (untimed)", flush=True)

    sampler = Sampler(pid, interval)
    sampler.sample()
    baseline = sampler.peaks["idle"]
    hwm_before = sampler.hwm
    sampler.start()
    sampler.phase = "push"
    t0 = time.perf_counter()
    push(target, name, source, digest, mode)
    push_s = time.perf_counter() - t0
    print(f"  pushed in {push_s:.1f} s", flush=True)

    sampler.phase = "pull"
    conn = target.connect()
    hasher = hashlib.sha256() if verify else None
    t0 = time.perf_counter()
    try:
        pull_blob(conn, target, name, digest, source.size, memoryview(bytearray(READ_BUFFER)), hasher)
    finally:
        conn.close()
    pull_s = time.perf_counter() - t0
    sampler.stop()
    if sampler.gone:
        raise BenchError(f"server process {pid} disappeared during the run")
    if hasher is not None and "sha256:" + hasher.hexdigest() != digest:
        raise BenchError("pulled bytes do not match the pushed digest")
    print(f"  pulled in {pull_s:.1f} s{' and verified' if verify else ''}", flush=True)

    kib = 1024
    return {
        "url": target.base,
        "pid": pid,
        "size_mib": size_mib,
        "mode": mode,
        "samples": sampler.samples,
        "baseline_rss_mib": round(baseline / kib, 1),
        "peak_rss_push_mib": round(sampler.peaks.get("push", 0) / kib, 1),
        "peak_rss_pull_mib": round(sampler.peaks.get("pull", 0) / kib, 1),
        "peak_rss_mib": round(max(sampler.peaks.values()) / kib, 1),
        "vmhwm_mib": round(sampler.hwm / kib, 1),
        "vmhwm_before_mib": round(hwm_before / kib, 1),
        "push_MiB_s": round(size_mib / push_s, 1),
        "pull_MiB_s": round(size_mib / pull_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="registry base URL (loopback only)")
    parser.add_argument("--pid", type=int, required=True, help="server process id to sample")
    parser.add_argument("--size-mib", type=int, default=2048, help="blob size (default 2048 = 2 GiB)")
    parser.add_argument("--chunk-mib", type=int, default=8, help="generator / PATCH chunk size")
    parser.add_argument("--mode", choices=["stream", "chunked"], default="stream",
                        help="one streamed PATCH (default) or a PATCH per chunk")
    parser.add_argument("--interval", type=float, default=0.1, help="sampling period in seconds")
    parser.add_argument("--no-verify", action="store_true", help="do not hash the pulled bytes")
    parser.add_argument("--json", metavar="OUT", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        report = run(args.url, args.pid, args.size_mib, args.chunk_mib, args.mode, args.interval,
                     not args.no_verify)
    except BenchError as exc:
        print(f"rss: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"  baseline RSS {report['baseline_rss_mib']} MiB; peak RSS during push "
          f"{report['peak_rss_push_mib']} MiB, during pull {report['peak_rss_pull_mib']} MiB")
    print(f"  peak RSS (sampled) {report['peak_rss_mib']} MiB; VmHWM {report['vmhwm_mib']} MiB "
          f"(was {report['vmhwm_before_mib']} MiB before the run)")
    print(f"  push {report['push_MiB_s']} MiB/s, pull {report['pull_MiB_s']} MiB/s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
