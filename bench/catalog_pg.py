"""A 1,000-entry catalog page with 100,000 repositories on PostgreSQL (issue 6: under 50 ms).

Starts the throwaway PostgreSQL cluster of tests/backends.py, creates dockyard's schema with its
migrations, seeds the repositories directly (one INSERT ... SELECT from generate_series), starts
an open ``dockyard serve`` on it, and times ``GET /v2/_catalog?n=1000`` for the first page and for
a page deep in the list (``last=``), 30 requests each after a warm-up. Also prints the plan of the
catalog query, which must walk the unique index on ``repositories.name`` (no full scan, no sort).

    .venv/bin/python bench/catalog_pg.py [--repositories 100000] [--requests 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import backends  # noqa: E402
from tests.server import RegistryServer  # noqa: E402

from dockyard.meta.db import create_engine, migrate  # noqa: E402
from dockyard.meta.tables import repositories  # noqa: E402


def seed(url: str, count: int) -> None:
    engine = create_engine(url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO repositories (name, created_at) "
                "SELECT 'team' || (i %% 100) || '/app-' || lpad(i::text, 6, '0'), extract(epoch from now()) "
                f"FROM generate_series(1, {int(count)}) AS i"
            )
            conn.exec_driver_sql("ANALYZE repositories")
    finally:
        engine.dispose()


def explain(url: str, last: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            q = sa.select(repositories.c.name).where(repositories.c.name > last)
            q = q.order_by(repositories.c.name).limit(1001)
            compiled = q.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF) {compiled}")
            return "\n".join(r[0] for r in rows)
    finally:
        engine.dispose()


def timed(client: httpx.Client, params: dict[str, str], requests: int) -> tuple[float, float, int]:
    for _ in range(3):
        client.get("/v2/_catalog", params=params).raise_for_status()
    times, entries = [], 0
    for _ in range(requests):
        start = time.perf_counter()
        r = client.get("/v2/_catalog", params=params)
        times.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
        entries = len(r.json()["repositories"])
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repositories", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dockyard-catalog-"))
    try:
        url = backends.postgres().url("catalog")
        backends.postgres().create_database("catalog")
        began = time.perf_counter()
        seed(url, args.repositories)
        print(f"seeded {args.repositories} repositories in {time.perf_counter() - began:.1f} s")
        server = RegistryServer(work / "data", env={"DOCKYARD_DATABASE_URL": url, "DOCKYARD_AUTH": "none"}).start()
        try:
            deep = f"team{50}/app-{args.repositories // 2:06d}"
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for label, params in (("first page", {"n": "1000"}), (f"last={deep}", {"n": "1000", "last": deep})):
                    median, p95, entries = timed(client, params, args.requests)
                    print(f"{label}: {entries} entries, median {median:.1f} ms, p95 {p95:.1f} ms")
        finally:
            server.stop()
        print("plan of the deep page's query:")
        print(explain(url, deep))
    finally:
        backends.stop()


if __name__ == "__main__":
    main()
