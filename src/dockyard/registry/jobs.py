"""Leases and the run log for background jobs (garbage collection, retention).

A job takes a named lease in the database before it starts, so the server's schedule, a
``dockyard gc`` from the command line and several replicas never run the same job at once. The
schedule also claims each interval's slot (``claim_slot``), so that with several replicas or
workers a scheduled job runs once per interval in all, not once per process. A lease expires
on its own: a process killed mid-run does not block the next one for longer than ``ttl``. Long
jobs renew it as they go.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any

import sqlalchemy as sa

from dockyard.meta import store
from dockyard.meta.tables import job_runs, leases


def owner_id() -> str:
    """Who holds a lease: readable in `dockyard gc` messages, unique per process and run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def acquire(conn: sa.Connection, name: str, owner: str, ttl: float) -> bool:
    """Take or renew ``name`` for ``ttl`` seconds; False when someone else holds it."""
    now = time.time()
    store._insert_ignore(conn, leases, {"name": name, "owner": owner, "expires_at": now + ttl})
    taken = conn.execute(
        sa.update(leases)
        .where(leases.c.name == name, sa.or_(leases.c.owner == owner, leases.c.expires_at < now))
        .values(owner=owner, expires_at=now + ttl)
    ).rowcount
    return taken > 0


def claim_slot(conn: sa.Connection, name: str, owner: str, period: float) -> bool:
    """Claim the next run of a periodic job: True for exactly one caller per ``period``, however
    many processes ask, and never before ``period`` has passed since the last claim.

    The slot is a lease that nobody releases; its expiry is when the next run is due. A registry
    started for the first time creates it as due one period later, so the first scheduled run
    comes one interval after the first start, and a restart does not reset the clock."""
    now = time.time()
    store._insert_ignore(conn, leases, {"name": name, "owner": "", "expires_at": now + period})
    claimed = conn.execute(
        sa.update(leases)
        # Due, or due further away than a whole period: the interval was shortened since.
        .where(leases.c.name == name, sa.or_(leases.c.expires_at <= now, leases.c.expires_at > now + period))
        .values(owner=owner, expires_at=now + period)
    ).rowcount
    return claimed > 0


def release(conn: sa.Connection, name: str, owner: str) -> None:
    conn.execute(sa.delete(leases).where(leases.c.name == name, leases.c.owner == owner))


def holder(conn: sa.Connection, name: str) -> sa.Row | None:
    return conn.execute(sa.select(leases).where(leases.c.name == name, leases.c.expires_at >= time.time())).first()


def start_run(conn: sa.Connection, job: str, trigger: str, dry_run: bool) -> int:
    result = conn.execute(sa.insert(job_runs).values(job=job, trigger=trigger, dry_run=dry_run, started_at=time.time()))
    return int(result.inserted_primary_key[0])


def finish_run(conn: sa.Connection, run_id: int, result: dict[str, Any]) -> None:
    conn.execute(
        sa.update(job_runs)
        .where(job_runs.c.id == run_id)
        .values(finished_at=time.time(), result=json.dumps(result, sort_keys=True))
    )


def recent_runs(conn: sa.Connection, job: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    q = sa.select(job_runs).order_by(job_runs.c.id.desc()).limit(limit)
    if job:
        q = q.where(job_runs.c.job == job)
    return [{**row._asdict(), "result": json.loads(row.result) if row.result else None} for row in conn.execute(q)]
