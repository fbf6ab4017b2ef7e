"""``/healthz`` (the process answers) and ``/readyz`` (it can do its work: the database answers a
query and storage takes a write and gives it back), for load balancers and orchestrators.

Neither needs a token nor is audited: probes arrive every few seconds from infrastructure that
holds no credentials, and they say nothing about the registry's content.

Each readiness check runs with a timeout, and at most one of each kind runs at a time: probes
arriving while one is still running wait for it rather than piling blocked threads onto the
database's readers or the storage pool, which pulls and pushes need.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from aiohttp import web

from dockyard.meta.tables import repositories
from dockyard.registry.service import Registry

READY_TIMEOUT = 5.0
PROBE_PREFIX = "_health"  # outside blobs/ and uploads/, so garbage collection never looks here


class _Probe:
    """One check, shared by the requests that arrive while it runs."""

    def __init__(self, check: Callable[[], Awaitable[None]]) -> None:
        self.check = check
        self._running: asyncio.Future[None] | None = None

    async def run(self, timeout: float) -> str:
        """'ok', or what went wrong."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self.check())
            # A failure no request waited for (all timed out) must not be logged as never retrieved.
            self._running.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            await asyncio.wait_for(asyncio.shield(self._running), timeout)
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except Exception as exc:  # the check's own failure is the answer
            return f"{type(exc).__name__}: {exc}"
        return "ok"


class Readiness:
    def __init__(self, registry: Registry, timeout: float = READY_TIMEOUT) -> None:
        self.registry = registry
        self.timeout = timeout
        # One probe key per process, overwritten each time: replicas never touch each other's.
        self.key = f"{PROBE_PREFIX}/{socket.gethostname()}-{os.getpid()}"
        self.probes = {"database": _Probe(self._database), "storage": _Probe(self._storage)}

    async def _database(self) -> None:
        # A real table through the read path that pulls use, not just a connection.
        await self.registry.db.read(lambda conn: conn.execute(sa.select(repositories.c.id).limit(1)).all())

    async def _storage(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.registry.pool, self._write_and_read, uuid.uuid4().bytes)

    def _write_and_read(self, token: bytes) -> None:
        storage = self.registry.storage
        storage.put(self.key, token, sync=False)
        with storage.reader(self.key) as f:
            if f.read() != token:
                raise OSError("storage gave back other bytes than were written")
        storage.delete(self.key)

    async def check(self) -> dict[str, str]:
        names = list(self.probes)
        results = await asyncio.gather(*(self.probes[n].run(self.timeout) for n in names))
        return dict(zip(names, results, strict=True))


READINESS = web.AppKey("readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await request.app[READINESS].check()
    ready = all(result == "ok" for result in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def setup(app: web.Application, registry: Registry) -> None:
    app[READINESS] = Readiness(registry)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
