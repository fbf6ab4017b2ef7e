#!/usr/bin/env python3
"""Garbage collection at scale, and what a running collection costs concurrent pushes.

Usage: ``gc.py [--repos 500] [--images 4] [--layers 4] [--rounds 2] [--out FILE]``

1. Fills a fresh dockyard with ``repos`` x ``images`` images of one config and ``layers``
   layers each (500 x 4 x 5 = 10,000 blobs by default, 4-64 KiB each), all distinct.
2. Deletes half the images of every repository, then times ``dockyard gc --grace 0``, which
   removes the orphaned manifests and their 5,000 blobs, and a second run with nothing to free
   (the steady-state cost of a scheduled run on a registry this size).
3. Pushes 4 x 16 MiB images from 4 clients, alternating rounds without and with ``dockyard gc``
   running back to back in another process (A/B/A/B), and prints median throughputs and the
   ratio. The concurrent collections run back to back in one process (as the server's schedule
   runs them) with a 60 s grace, as a real schedule would: with grace 0, the blobs of a push in
   progress could be collected before its manifest arrives.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchlib import MiB, Target, request
from compare import DOCKYARD, ROOT, Server, start, stop_all
from registry_bench import push_image

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
GC_LOOP = """
import os, sys, time
from dockyard.meta.db import Database
from dockyard.registry.gc import Collector
from dockyard.storage.filesystem import FilesystemDriver
data, stop = sys.argv[1], sys.argv[2]
db = Database(f"sqlite:///{data}/dockyard.db")
collector = Collector(db, FilesystemDriver(data), grace=60, upload_ttl=86400)
while not os.path.exists(stop):
    print(collector.run(trigger="bench").seconds, flush=True)
"""


def gc(data_dir: Path, grace: float) -> tuple[float, dict]:
    started = time.monotonic()
    out = subprocess.run([str(DOCKYARD), "gc", "--json", "--grace", str(grace), "--data-dir", str(data_dir)],
                         capture_output=True, text=True, env={**os.environ, "DOCKYARD_GC_INTERVAL": "0"})
    wall = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"dockyard gc failed: {out.stderr}")
    return wall, json.loads(out.stdout)


def populate(target: Target, repos: int, images: int, layers: int) -> list[tuple[str, str]]:
    """Push everything; returns (repository, manifest digest) of the images to delete later."""
    def one(r: int) -> list[tuple[str, str]]:
        name = f"gc/r{r:04d}"
        doomed = []
        for i in range(images):
            blobs = [os.urandom(4096 * (1 + (r + i + k) % 16)) for k in range(layers)]
            image = push_image(target, name, f"v{i}", blobs)
            if i % 2:
                doomed.append((name, image.digest))
        return doomed

    with ThreadPoolExecutor(4) as pool:
        return [d for found in pool.map(one, range(repos)) for d in found]


def push_round(target: Target, label: str, clients: int = 4, per_client: int = 2, size: int = 16 * MiB) -> float:
    """MiB/s of ``clients`` pushing ``per_client`` images of four ``size/4`` layers each."""
    payload = [[[os.urandom(size // 4) for _ in range(4)] for _ in range(per_client)] for _ in range(clients)]

    def client(c: int) -> None:
        for i, layers in enumerate(payload[c]):
            push_image(target, f"push/{label}-{c}", f"v{i}", layers)

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return clients * per_client * size / MiB / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=500)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    atexit.register(stop_all)
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-gc-bench-"))
    server: Server = start("dockyard", workdir / "dockyard")
    target = Target.parse(server.url)
    data_dir = server.workdir / "data"

    started = time.monotonic()
    doomed = populate(target, args.repos, args.images, args.layers)
    blobs = args.repos * args.images * (args.layers + 1)
    print(f"populated {args.repos} repositories, {blobs} blobs in {time.monotonic() - started:.1f} s", flush=True)
    conn = target.connect()
    for name, digest in doomed:
        request(conn, "DELETE", f"/v2/{name}/manifests/{digest}", expect=(202,))
    conn.close()
    wall, freeing = gc(data_dir, 0)
    print(f"gc freeing: {freeing['blobs_removed']} blobs + {freeing['manifests_removed']} manifests, "
          f"{freeing['bytes_freed'] / 1e6:.1f} MB in {freeing['seconds']:.2f} s ({wall:.2f} s with process start)",
          flush=True)
    wall_idle, idle = gc(data_dir, 0)
    print(f"gc with nothing to free: {idle['seconds']:.2f} s ({wall_idle:.2f} s with process start)", flush=True)

    results: dict[str, list[float]] = {"without gc": [], "with gc": []}
    gc_runs: list[float] = []
    for r in range(args.rounds):
        results["without gc"].append(push_round(target, f"a{r}"))
        # One process collecting back to back, as the server's schedule would (a `dockyard gc` per
        # run would mostly measure Python start-up).
        stop = workdir / "stop-gc"
        loop = subprocess.Popen([str(VENV_PYTHON), "-c", GC_LOOP, str(data_dir), str(stop)],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        try:
            results["with gc"].append(push_round(target, f"b{r}"))
        finally:
            stop.touch()
            out, _ = loop.communicate(timeout=120)
            stop.unlink()
        gc_runs += [float(x) for x in out.split()]
        print(f"round {r + 1}: without {results['without gc'][-1]:.0f} MiB/s, "
              f"with {results['with gc'][-1]:.0f} MiB/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    ratio = med["with gc"] / med["without gc"]
    print(f"push throughput median: without gc {med['without gc']:.0f} MiB/s, with gc {med['with gc']:.0f} MiB/s, "
          f"ratio {ratio:.2f} ({len(gc_runs)} concurrent gc runs, median {statistics.median(gc_runs):.2f} s each)")
    report = {
        "blobs": blobs, "repositories": args.repos, "gc_freeing": freeing, "gc_freeing_wall_s": wall,
        "gc_idle": idle, "push_mib_s": results, "median": med, "ratio_with_over_without": ratio,
        "concurrent_gc_runs": len(gc_runs),
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
