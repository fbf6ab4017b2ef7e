#!/usr/bin/env python3
"""dockyard against CNCF Distribution, interleaved A/B/A/B, with medians and ratios.

Usage: ``compare.py [--rounds 2] [--quick] [--no-rss] [--keep] [--out FILE]
[--against distribution|auth|tree|postgres|s3|replicas [--tree PATH]]``

Why interleaved: on a shared two-core machine throughput drifts with page-cache state, disk
write-back and whatever else runs; alternating the two servers round by round spreads that drift
over both instead of handing it to whichever ran second. Each registry_bench run is its own
process, so client memory and warm caches do not carry over between runs. Both servers run for
the whole comparison (an idle one costs nothing) on fresh data folders and free loopback ports;
the RSS check then gets freshly started servers so VmHWM reflects only the 2 GiB transfer.

Distribution is configured to match dockyard's defaults as closely as its options allow:
filesystem storage, no auth, in-memory blob descriptor cache, access log off and log level
``warn`` (dockyard writes no per-request log lines either), upload purging off.

The scale-out comparisons (issue 6) run dockyard against itself, so that one thing differs:
``postgres`` (A: PostgreSQL metadata, B: SQLite; both on the filesystem), ``s3`` (A: a bucket on
SeaweedFS, B: the filesystem; both SQLite) and ``replicas`` (A: three replicas, B: one; each side
behind nginx with deploy/nginx/dockyard.conf, on PostgreSQL and a SeaweedFS bucket of its own).
They start the services with tests/backends.py and tests/nginx.py, so they need the project's
virtualenv (``.venv/bin/python bench/compare.py``). PostgreSQL runs with ``fsync`` and
``synchronous_commit`` on (the tests turn them off), as SQLite on the other side syncs every
commit. "Server CPU" there is the sum over every process serving the requests and their
children: the dockyard processes and, where the side has them, PostgreSQL, SeaweedFS and nginx.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOCKYARD = ROOT / ".venv" / "bin" / "dockyard"
DISTRIBUTION = Path("/usr/bin/docker-registry")
PYTHON = sys.executable

DIST_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: dockyard-bench-only
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(prefix: str) -> dict[str, str]:
    """The caller's environment minus the server's own override variables, so a stray
    ``REGISTRY_*`` or ``DOCKYARD_*`` cannot change what is being measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith(prefix)}


@dataclass
class Server:
    """A registry process this script started; ``stop`` ends exactly that process."""

    label: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)  # backend settings, over the defaults
    proc: subprocess.Popen | None = None
    port: int = 0
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> tuple[list[str], dict[str, str]]:
        if self.label.startswith("dockyard"):
            env = {**clean_env("DOCKYARD_"), "DOCKYARD_AUTH": "none"}
            if self.label == "dockyard-base":  # another checkout's code, with this venv's packages
                env["PYTHONPATH"] = str(BASE_TREE / "src")
            if self.label == "dockyard-auth":
                env.update({"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": BENCH_PASSWORD})
            env.update(self.env)
            return ([str(DOCKYARD), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--data-dir", str(self.workdir / "data")], env)
        config = self.workdir / "config.yml"
        config.write_text(DIST_CONFIG.format(root=self.workdir / "data", port=self.port))
        return [str(DISTRIBUTION), "serve", str(config)], clean_env("REGISTRY_")

    def start(self) -> None:
        self.port = free_port()
        cmd, env = self.command()
        with open(self.log_path, "ab") as log:
            # Own session: a Ctrl-C in the terminal reaches this script, which then stops the
            # server in order, instead of killing it mid-write.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.label} exited with {self.proc.returncode} at start; "
                                 f"see {self.log_path}:\n{self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=2) as resp:
                    if resp.status == 200:
                        print(f"{self.label}: pid {self.pid} on {self.url}", flush=True)
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # token authentication on: the API answers, with a challenge
                    print(f"{self.label}: pid {self.pid} on {self.url} (token auth)", flush=True)
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.label} did not answer /v2/ within 60 s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.returncode not in (0, -signal.SIGTERM, 2):
            print(f"note: {self.label} exited with {self.proc.returncode}", flush=True)


@dataclass
class Side:
    """One column of the table: the URL registry_bench loads (a server, or nginx in front of
    several), the dockyard processes that must stay up through a run, and the processes whose CPU
    (with their descendants') counts as the server's."""

    label: str
    url: str
    servers: list[Server]
    cpu_pids: list[int]

    @property
    def logs(self) -> str:
        return ", ".join(str(s.log_path) for s in self.servers)


_SERVERS: list[Server] = []
# Stopped around the servers: proxies before them (no new requests), backing services after
# them (a draining server may still write). Each has ``stop()``, safe to call twice.
_PROXIES: list[Any] = []
_BACKENDS: list[Any] = []
KEEP_LOGS: Path | None = None  # --keep: where the backing services' logs are saved before they stop
BASE_TREE = ROOT  # --against-tree: the checkout "dockyard-base" runs
BENCH_PASSWORD = "bench-admin-password"


def stop_all() -> None:
    for group in (_PROXIES, _SERVERS, _BACKENDS):
        for thing in group:
            try:
                if group is _BACKENDS and KEEP_LOGS is not None and thing.proc is not None:
                    # Their stop() removes their folder, log included.
                    (KEEP_LOGS / f"{type(thing).__name__}-{thing.proc.pid}.log").write_text(thing.log())
                thing.stop()
            except Exception as exc:  # keep stopping the others
                proc = getattr(thing, "proc", None)
                print(f"could not stop {getattr(thing, 'label', type(thing).__name__)} "
                      f"(pid {proc.pid if proc else '-'}): {exc}", file=sys.stderr)


def _on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def start(label: str, workdir: Path, env: dict[str, str] | None = None) -> Server:
    server = Server(label, workdir, dict(env or {}))
    _SERVERS.append(server)
    server.start()
    return server


def single(label: str, work: Path, env: dict[str, str] | None = None, backend_pids: tuple[int, ...] = ()) -> Side:
    server = start(label, work / label, env)
    return Side(label, server.url, [server], [server.pid, *backend_pids])


# -- issue 6: PostgreSQL, SeaweedFS and nginx, from the tests' helpers --------------------------

# PostgreSQL's own defaults for durability (tests/backends.py turns them off for speed).
PG_DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def _test_helpers() -> tuple[Any, Any]:
    """tests/backends.py and tests/nginx.py, which need the project's virtualenv."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests import backends, nginx
    except ImportError as exc:
        raise SystemExit(f"--against postgres|s3|replicas needs the project's virtualenv "
                         f"(.venv/bin/python bench/compare.py): {exc}") from None
    return backends, nginx


def start_postgres() -> Any:
    backends, _ = _test_helpers()
    cluster = backends.PostgresCluster(settings=PG_DURABLE)
    _BACKENDS.append(cluster)
    cluster.start()
    print(f"postgresql: pid {cluster.proc.pid} on 127.0.0.1:{cluster.port}", flush=True)
    return cluster


def start_seaweedfs() -> Any:
    backends, _ = _test_helpers()
    weed = backends.SeaweedFS()
    _BACKENDS.append(weed)
    weed.start()
    print(f"seaweedfs: pid {weed.proc.pid}, S3 on {weed.endpoint}", flush=True)
    return weed


def s3_env(weed: Any, bucket: str) -> dict[str, str]:
    """A fresh bucket of its own, and the settings that point dockyard at it."""
    backends, _ = _test_helpers()
    weed.create_bucket(bucket)
    return {"DOCKYARD_STORAGE": "s3", "DOCKYARD_S3_ENDPOINT": weed.endpoint, "DOCKYARD_S3_BUCKET": bucket,
            "DOCKYARD_S3_REGION": backends.S3_REGION, **backends.S3_CREDENTIALS}


def behind_nginx(label: str, work: Path, count: int, env: dict[str, str], backend_pids: tuple[int, ...]) -> Side:
    """``count`` replicas (each with a data folder of its own: they share only what ``env`` points
    at) behind nginx running the repository's example configuration."""
    _, nginx = _test_helpers()
    servers = [start(f"dockyard-{label}-{i}", work / label / f"replica-{i}", env) for i in range(count)]
    port = free_port()
    conf = nginx.render_nginx(work / label / "nginx", port, [s.port for s in servers],
                              worker_processes="auto", access_log=False)
    proxy = nginx.Nginx(conf, port)
    _PROXIES.append(proxy)
    proxy.start()
    print(f"{label}: nginx pid {proxy.proc.pid} on {proxy.url} -> "
          + ", ".join(f"pid {s.pid} :{s.port}" for s in servers), flush=True)
    return Side(label, proxy.url, servers, [*(s.pid for s in servers), proxy.proc.pid, *backend_pids])


def start_sides(against: str, work: Path) -> list[Side]:
    """A first, then B; everything started is registered for stop_all before it starts."""
    if against == "postgres":
        pg = start_postgres()
        pg.create_database("bench")
        return [single("dockyard-pg", work, {"DOCKYARD_DATABASE_URL": pg.url("bench")}, (pg.proc.pid,)),
                single("dockyard", work)]
    if against == "s3":
        weed = start_seaweedfs()
        env = s3_env(weed, f"bench-{secrets.token_hex(4)}")
        return [single("dockyard-s3", work, env, (weed.proc.pid,)), single("dockyard", work)]
    if against == "replicas":
        # One PostgreSQL and one SeaweedFS for both sides (idle while the other side runs), with a
        # database and a bucket per side, so that neither sees the other's data.
        pg, weed = start_postgres(), start_seaweedfs()
        sides = []
        for label, count in (("3-replicas", 3), ("1-replica", 1)):
            database = f"bench_{count}r"
            pg.create_database(database)
            env = {**s3_env(weed, f"bench-{count}r-{secrets.token_hex(4)}"), "DOCKYARD_DATABASE_URL": pg.url(database),
                   "DOCKYARD_TRUSTED_PROXIES": "127.0.0.1"}
            sides.append(behind_nginx(label, work, count, env, (pg.proc.pid, weed.proc.pid)))
        return sides
    labels = {"distribution": ["dockyard", "distribution"], "auth": ["dockyard-auth", "dockyard"],
              "tree": ["dockyard", "dockyard-base"]}[against]
    return [single(label, work) for label in labels]


def run_bench(side: Side, quick: bool, out: Path) -> dict:
    cmd = [PYTHON, str(HERE / "registry_bench.py"), side.url, "--json", str(out)]
    cmd += ["--pid", ",".join(str(pid) for pid in side.cpu_pids)]
    if quick:
        cmd.append("--quick")
    if side.label == "dockyard-auth":
        cmd += ["--user", "admin", "--password", BENCH_PASSWORD]
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0 or not out.exists():
        raise SystemExit(f"registry_bench against {side.label} failed (exit {result.returncode}); "
                         f"server log: {side.logs}")
    for server in side.servers:
        if server.proc is not None and server.proc.poll() is not None:
            raise SystemExit(f"{server.label} died during the run; see {server.log_path}")
    return json.loads(out.read_text())


def run_rss(server: Server, quick: bool, out: Path) -> dict | None:
    cmd = [PYTHON, str(HERE / "rss.py"), server.url, "--pid", str(server.pid), "--json", str(out)]
    if quick:
        cmd += ["--size-mib", "512"]
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0 or not out.exists():
        print(f"rss.py against {server.label} failed (exit {result.returncode}); see {server.log_path}")
        return None
    return json.loads(out.read_text())


def lower_is_better(metric: str) -> bool:
    return metric.endswith("_ms") or "_cpu_" in metric


def summarize(runs: dict[str, list[dict]]) -> list[dict]:
    """Per metric: each server's median over rounds, and A / B (the first label over the second)."""
    a, b = list(runs)
    names = list(runs[a][0]["metrics"])
    rows = []
    for name in names:
        if "_client_cpu_" in name:
            continue  # kept in the JSON; the table is about the servers
        values = {label: [r["metrics"][name] for r in results if name in r["metrics"]]
                  for label, results in runs.items()}
        if not all(values.values()):
            continue
        med = {label: statistics.median(v) for label, v in values.items()}
        ratio = med[a] / med[b] if med[b] else float("nan")
        rows.append({"metric": name, "unit": runs[a][0]["units"][name], "a": med[a], "b": med[b],
                     "ratio": ratio, "values": values, "better": "lower" if lower_is_better(name) else "higher"})
    return rows


def print_summary(rows: list[dict], rounds: int, a: str, b: str) -> None:
    width = max(len(r["metric"]) for r in rows)
    print(f"\nMedians over {rounds} round(s). ratio = {a} / {b}; "
          "'better' says which direction favours a server.")
    print(f"{'metric':<{width}}  {'unit':<11} {a[:13]:>13} {b[:13]:>13} {'ratio':>7}  better  verdict")
    print("-" * (width + 64))
    for r in rows:
        ratio = r["ratio"]
        if ratio != ratio:  # NaN
            verdict = "-"
        else:
            favourable = ratio > 1 if r["better"] == "higher" else ratio < 1
            factor = ratio if ratio >= 1 else 1 / ratio if ratio else float("inf")
            verdict = "same" if abs(factor - 1) < 0.05 else (
                f"{a} {factor:.2f}x {'better' if favourable else 'worse'}")
        print(f"{r['metric']:<{width}}  {r['unit']:<11} {r['a']:>13.3f} {r['b']:>13.3f} "
              f"{ratio:>7.3f}  {r['better']:<6}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs (default 2)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to registry_bench; 512 MiB rss blob")
    parser.add_argument("--no-rss", action="store_true", help="skip the 2 GiB RSS check")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data folders and logs")
    parser.add_argument("--out", help="results JSON (default bench/results/compare-<time>.json)")
    parser.add_argument("--against", choices=["distribution", "auth", "tree", "postgres", "s3", "replicas"],
                        default="distribution",
                        help="B side: Distribution 2.8 (default), dockyard with token auth on (A is then "
                             "dockyard-auth, B dockyard with auth off), or dockyard from --tree (an older "
                             "checkout, e.g. `git worktree add /tmp/base COMMIT`), to measure a change; "
                             "issue 6: postgres (A: PostgreSQL metadata, B: SQLite), s3 (A: S3 on SeaweedFS, "
                             "B: filesystem), replicas (A: three replicas behind nginx, B: one)")
    parser.add_argument("--tree", type=Path, help="the checkout for --against tree")
    args = parser.parse_args(argv)
    if args.against == "tree":
        if args.tree is None or not (args.tree / "src" / "dockyard").is_dir():
            raise SystemExit("--against tree needs --tree PATH, a checkout with src/dockyard")
        global BASE_TREE
        BASE_TREE = args.tree.resolve()
    needed = [DOCKYARD] + ([DISTRIBUTION] if args.against == "distribution" else [])
    for path in needed:
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path} not found (run ./dev test once for the venv; apt-get install docker-registry)")
    missing = [tool for tool in ("wrk", "ab") if shutil.which(tool) is None]
    if missing:
        print(f"note: {', '.join(missing)} not installed; registry_bench falls back to its Python load loop "
              "(apt-get install wrk apache2-utils)", flush=True)
    if args.against == "replicas" and shutil.which("nginx") is None:
        raise SystemExit("--against replicas needs nginx (apt-get install nginx)")

    # Explicitly, since a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(stop_all)
    work = Path(tempfile.mkdtemp(prefix="dockyard-compare-"))
    if args.keep:
        global KEEP_LOGS
        KEEP_LOGS = work
    out = Path(args.out) if args.out else HERE / "results" / f"compare-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs: dict[str, list[dict]] = {}
    rss: dict[str, dict | None] = {}
    try:
        sides = start_sides(args.against, work)
        labels = [side.label for side in sides]
        runs = {label: [] for label in labels}
        for round_no in range(1, args.rounds + 1):
            for side in sides:
                print(f"\n=== round {round_no}/{args.rounds}: {side.label} ===", flush=True)
                runs[side.label].append(run_bench(side, args.quick, work / f"{side.label}-{round_no}.json"))
        stop_all()
        if not args.no_rss and args.against == "distribution":
            for label in ("dockyard", "distribution"):
                print(f"\n=== rss: {label} (fresh server) ===", flush=True)
                server = start(label, work / f"{label}-rss")
                rss[label] = run_rss(server, args.quick, work / f"rss-{label}.json")
                server.stop()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping servers", file=sys.stderr)
        return 130
    finally:
        stop_all()
        if args.keep:
            print(f"data and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    rows = summarize(runs)
    print_summary(rows, args.rounds, *labels)
    tools = runs[labels[0]][0].get("rate_clients", {})
    print("request-rate load tools: " + ", ".join(f"{k} {v}" for k, v in tools.items())
          + " (wrk -t2 -c4 --latency; ab -k -c4; 'python' = selector loop)")
    for label, results in runs.items():
        for i, r in enumerate(results, 1):
            for note in r["notes"]:
                print(f"note ({label}, round {i}): {note}")
    for label, report in rss.items():
        if report:
            print(f"\nrss {label}: {report['size_mib']} MiB blob ({report['mode']} upload): "
                  f"peak RSS {report['peak_rss_mib']} MiB (push {report['peak_rss_push_mib']}, "
                  f"pull {report['peak_rss_pull_mib']}, idle {report['baseline_rss_mib']}), "
                  f"VmHWM {report['vmhwm_mib']} MiB; push {report['push_MiB_s']} MiB/s, "
                  f"pull {report['pull_MiB_s']} MiB/s")
    out.write_text(json.dumps({"rounds": args.rounds, "quick": args.quick, "summary": rows, "runs": runs,
                               "rss": rss, "elapsed_s": round(time.monotonic() - started)}, indent=2) + "\n")
    print(f"\nresults: {out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
