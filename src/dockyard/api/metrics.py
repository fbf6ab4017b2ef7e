"""Prometheus metrics at ``/metrics``: HTTP traffic measured here, registry state read from the
database at scrape time.

Traffic (this process, since it started):

* ``dockyard_http_requests_total{route,method,status}`` and
  ``dockyard_http_request_duration_seconds{route,method}``. ``route`` is the route's pattern
  (``/v2/{name}/manifests/{reference}``), never the path: repository names and digests would
  make a new series per image. Unmatched paths are ``unmatched``, unknown methods ``OTHER``. The
  duration is the time to produce the response; a blob body streamed from a file (sendfile) is
  sent after that.
* ``dockyard_http_received_bytes_total``: request body bytes read (uploads, chunked or not,
  manifests, API bodies).
* ``dockyard_http_sent_bytes_total``: response body bytes; blob bodies are counted from the
  registry's 'serve' observations (the bytes of the requested range), which also cover bodies
  sent from a file, whose length a middleware cannot see.

State (read from the database on each scrape, so it includes the work of other processes, such
as ``dockyard gc`` from the command line, and survives restarts):

* ``dockyard_uploads_active``: upload sessions open in the database (started, neither finished nor
  abandoned): what a push in progress holds, across restarts and processes.
* ``dockyard_storage_bytes{kind}`` and ``dockyard_storage_objects{kind}``: blobs and manifests
  stored (referenced or not); ``dockyard_repositories``.
* ``dockyard_gc_runs_total{trigger}`` and ``dockyard_gc_bytes_freed_total``: finished garbage
  collections that were not dry runs, from ``job_runs``.
* ``dockyard_webhook_deliveries_total{status}`` (delivered, failed) and
  ``dockyard_webhook_deliveries_pending``, from the delivery log.

Each scrape runs a handful of aggregate queries; concurrent scrapes share one. When the database
does not answer, the last figures are served and ``dockyard_database_up`` is 0.

Every application gets a ``CollectorRegistry`` of its own (not prometheus_client's global one),
so several applications in one process (tests) do not collide. With ``metrics_token`` set,
``/metrics`` needs ``Authorization: Bearer <token>``; with ``metrics_port``, it is also served on
that port (plain HTTP, nothing else there), for a scraper that should not reach the registry.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dockyard.api.errors import Handler
from dockyard.meta import portable
from dockyard.meta.db import Database
from dockyard.meta.tables import blobs, job_runs, manifests, repositories, uploads, webhook_deliveries
from dockyard.registry.hooks import Change, NoHooks

if TYPE_CHECKING:
    from dockyard.config import Settings

log = logging.getLogger("dockyard.metrics")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BLOB_ROUTE = "/v2/{name}/blobs/{digest}"  # bodies counted from 'serve' observations
# Up to two minutes: a large monolithic upload is answered only when its body has arrived.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CLIENT_CLOSED = 499  # the client went away before the answer (nginx's convention)


@dataclass(slots=True)
class Snapshot:
    """The registry state that the database holds, as of ``at``."""

    at: float = 0.0
    uploads: int = 0
    repositories: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    manifests: int = 0
    manifest_bytes: int = 0
    gc_runs: dict[str, int] = field(default_factory=dict)  # trigger -> finished runs
    gc_bytes_freed: int = 0
    deliveries: dict[str, int] = field(default_factory=dict)  # status -> rows


def read_snapshot(conn: sa.Connection) -> Snapshot:
    s = Snapshot(at=time.time())
    s.uploads = int(conn.execute(sa.select(sa.func.count()).select_from(uploads)).scalar_one())
    s.repositories = int(conn.execute(sa.select(sa.func.count()).select_from(repositories)).scalar_one())
    for table, kind in ((blobs, "blob"), (manifests, "manifest")):
        count, total = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(table.c.size), 0))).one()
        setattr(s, f"{kind}s", int(count))
        setattr(s, f"{kind}_bytes", int(total))
    runs = (
        sa.select(
            job_runs.c.trigger,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(portable.json_integer(job_runs.c.result, "bytes_freed")), 0),
        )
        .where(job_runs.c.job == "gc", job_runs.c.dry_run.is_(False), job_runs.c.finished_at.is_not(None))
        .group_by(job_runs.c.trigger)
    )
    for trigger, count, freed in conn.execute(runs):
        s.gc_runs[trigger] = int(count)
        s.gc_bytes_freed += int(freed)
    statuses = sa.select(webhook_deliveries.c.status, sa.func.count()).group_by(webhook_deliveries.c.status)
    s.deliveries = {status: int(count) for status, count in conn.execute(statuses)}
    return s


class _DatabaseFigures(Collector):
    """Yields the last snapshot's figures at each collection (which is synchronous: the
    snapshot is refreshed, asynchronously, just before)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; the names are fixed below

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "dockyard_database_up", "1 when the last scrape could read the database", value=self.metrics.database_up
        )
        s = self.metrics.snapshot
        if s is None:
            return
        yield GaugeMetricFamily("dockyard_uploads_active", "Upload sessions open in the database", value=s.uploads)
        yield GaugeMetricFamily("dockyard_repositories", "Repositories", value=s.repositories)
        stored = GaugeMetricFamily("dockyard_storage_bytes", "Bytes stored, referenced or not", labels=["kind"])
        stored.add_metric(["blob"], s.blob_bytes)
        stored.add_metric(["manifest"], s.manifest_bytes)
        yield stored
        objects = GaugeMetricFamily("dockyard_storage_objects", "Blobs and manifests stored", labels=["kind"])
        objects.add_metric(["blob"], s.blobs)
        objects.add_metric(["manifest"], s.manifests)
        yield objects
        runs = CounterMetricFamily(
            "dockyard_gc_runs", "Finished garbage collections (not dry runs), by trigger", labels=["trigger"]
        )
        for trigger in sorted({"schedule", "cli", "api", *s.gc_runs}):
            runs.add_metric([trigger], s.gc_runs.get(trigger, 0))
        yield runs
        yield CounterMetricFamily(
            "dockyard_gc_bytes_freed", "Bytes freed by garbage collection", value=s.gc_bytes_freed
        )
        deliveries = CounterMetricFamily(
            "dockyard_webhook_deliveries", "Webhook deliveries finished, by outcome", labels=["status"]
        )
        for status in ("delivered", "failed"):
            deliveries.add_metric([status], s.deliveries.get(status, 0))
        yield deliveries
        yield GaugeMetricFamily(
            "dockyard_webhook_deliveries_pending",
            "Webhook deliveries waiting for their first or next attempt",
            value=s.deliveries.get("pending", 0),
        )


class Metrics(NoHooks):
    """The application's metrics: a middleware for the traffic, a registry hook for the blob
    bytes served, and the database snapshot. Added to the registry's hooks for ``observed``."""

    def __init__(self, db: Database, token: str = "") -> None:
        self.db = db
        self.token = token
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dockyard_http_requests",
            "HTTP requests answered, by route pattern, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "dockyard_http_request_duration_seconds",
            "Time to produce the response, by route pattern and method",
            ("route", "method"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.received = Counter("dockyard_http_received_bytes", "Request body bytes read", registry=self.registry)
        self.sent = Counter("dockyard_http_sent_bytes", "Response body bytes sent", registry=self.registry)
        self.in_flight = Gauge("dockyard_http_requests_in_flight", "Requests being answered", registry=self.registry)
        self._counters: dict[tuple[str, str, int], Any] = {}  # labelled children, see _record
        self._histograms: dict[tuple[str, str], Any] = {}
        self.snapshot: Snapshot | None = None
        self.database_up = 0
        self._refreshing: asyncio.Future[None] | None = None
        self.registry.register(_DatabaseFigures(self))

    # -- traffic -----------------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status, response = 500, None
        self.in_flight.inc()
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        finally:
            self.in_flight.dec()
            self._record(request, status, response, time.perf_counter() - start)

    def _record(self, request: web.Request, status: int, response: web.StreamResponse | None, seconds: float) -> None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        method = request.method if request.method in METHODS else "OTHER"
        # Label lookups lock and hash on every call; the children are few (routes x methods x
        # statuses), so keep them. This runs once per request, on the pull path.
        counter = self._counters.get((route, method, status))
        if counter is None:
            counter = self._counters[(route, method, status)] = self.requests.labels(route, method, str(status))
        counter.inc()
        histogram = self._histograms.get((route, method))
        if histogram is None:
            histogram = self._histograms[(route, method)] = self.latency.labels(route, method)
        histogram.observe(seconds)
        received = getattr(request.content, "total_bytes", 0)
        if received:
            self.received.inc(received)
        if isinstance(response, web.Response) and request.method != "HEAD" and route != BLOB_ROUTE:
            self.sent.inc(response.content_length or 0)

    def observed(self, change: Change) -> None:
        if change.action == "serve" and change.size:
            self.sent.inc(change.size)

    # -- state ---------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the database figures; scrapes arriving meanwhile wait for the same read."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._refreshing)  # a scrape that gives up does not cancel the others' read

    async def _refresh(self) -> None:
        try:
            self.snapshot = await self.db.read(read_snapshot)
            self.database_up = 1
        except Exception:
            self.database_up = 0
            log.warning("metrics: could not read the database", exc_info=True)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", Metrics)


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(errors="replace"), f"Bearer {token}".encode())


async def get_metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    if metrics.token and not _authorized(request, metrics.token):
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "metrics need a bearer token", "detail": None}]},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="dockyard-metrics"'},
        )
    await metrics.refresh()
    return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application, metrics: Metrics) -> None:
    app[METRICS] = metrics
    app.router.add_get("/metrics", get_metrics)


async def start_port(app: web.Application, settings: Settings) -> web.AppRunner | None:
    """With ``metrics_port``, serve ``/metrics`` (only) on that port too; the caller cleans the
    returned runner up. None when there is no such port (or it is the main one)."""
    if settings.metrics_port <= 0 or settings.metrics_port == settings.port:
        return None
    side = web.Application()
    side[METRICS] = app[METRICS]
    side.router.add_get("/metrics", get_metrics)
    runner = web.AppRunner(side, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.metrics_port).start()
    print(f"dockyard metrics on http://{settings.host}:{settings.metrics_port}/metrics", flush=True)
    return runner
