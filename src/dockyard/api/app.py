"""Builds the aiohttp application: one module per endpoint family, wired to one Registry."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import sqlalchemy as sa
from aiohttp import web

from dockyard import web as web_ui
from dockyard.api import auth as auth_api
from dockyard.api import base, blobs, health, listing, manifests, metrics, uploads
from dockyard.api.errors import errors_middleware
from dockyard.api.lifecycle import InFlight
from dockyard.api.proxies import TrustedProxies
from dockyard.api.state import AUDIT, AUTH, INFLIGHT, PRICES, REGISTRY, SCHEDULE, USAGE_HOLDINGS, WEBHOOKS
from dockyard.auth.audit import AuditLog
from dockyard.config import ConfigError, Settings
from dockyard.meta.db import Database
from dockyard.registry import webhooks
from dockyard.registry.enforcement import PolicyHooks
from dockyard.registry.gc import Collector
from dockyard.registry.retention import run_scheduled_retention
from dockyard.registry.schedule import Schedule
from dockyard.registry.service import Registry
from dockyard.registry.usage import UsageRecorder
from dockyard.registry.usage_report import HoldingsCache, Prices
from dockyard.storage import open_storage
from dockyard.tls import server_ssl_context

if TYPE_CHECKING:
    from dockyard.auth.service import AuthService


async def _api_version_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Docker-Distribution-API-Version", "registry/2.0")


def create_app(settings: Settings, *, migrate: bool = True) -> web.Application:
    """``migrate=False`` for the workers of ``serve --workers``, whose supervisor migrated once."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url, settings.database_pool_size)
    if migrate:
        db.migrate()
    storage = open_storage(settings)
    # Hashing, writing, fsync and rename run here so the event loop keeps serving.
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="io")
    inflight = InFlight()
    app_metrics = metrics.Metrics(db, settings.metrics_token)
    middlewares = [app_metrics.middleware, inflight.middleware, errors_middleware]  # metrics see every answer
    if settings.trusted_proxies:  # first: everything after sees the client's address, scheme and host
        middlewares.insert(0, TrustedProxies(settings.trusted_proxies).middleware)
    if settings.auth == "token":
        middlewares.append(auth_api.authorization_middleware)
    middlewares.append(web_ui.html_errors)
    app = web.Application(middlewares=middlewares)
    if settings.auth == "token":
        app[AUTH] = _auth_service(settings, db)
        auth_api.setup(app)
        from dockyard.api import admin  # imported only with accounts, like _auth_service's modules

        admin.setup(app)
    registry = app[REGISTRY] = Registry(db, storage, pool, gc_grace=settings.gc_grace)
    registry.hooks.add(PolicyHooks())  # tag immutability and quotas, ahead of hooks that record changes
    schedule = app[SCHEDULE] = Schedule(
        registry,
        Collector(db, storage, settings.gc_grace, settings.upload_ttl, registry.uploads.busy),
        settings.gc_interval,
        before_gc=lambda: run_scheduled_retention(db, registry.hooks),  # retention frees, GC removes
    )
    webhook_service = app[WEBHOOKS] = webhooks.setup(registry, db, settings)
    usage = UsageRecorder(db)
    registry.hooks.add(usage)
    registry.hooks.add(app_metrics)
    app[PRICES] = Prices(settings.price_storage_gb_month, settings.price_egress_gb)
    app[USAGE_HOLDINGS] = HoldingsCache()
    app[INFLIGHT] = inflight
    audit_log = app[AUDIT] = AuditLog(db)
    app.on_response_prepare.append(_api_version_header)
    app.on_response_prepare.append(inflight.on_prepare)

    async def start(_app: web.Application) -> None:
        audit_log.start()
        usage.start()
        schedule.start()
        await webhook_service.start()

    async def close(_app: web.Application) -> None:
        await webhook_service.stop()  # writes queued pull events: before the database closes
        await schedule.stop()
        await audit_log.stop()
        await usage.stop()
        pool.shutdown(wait=True)
        db.close()

    app.on_startup.append(start)
    app.on_cleanup.append(close)
    # The router tries routes in order: the pull path (manifests, blobs) goes first. The patterns
    # cannot shadow each other, since a digest or an upload id never contains a slash.
    manifests.setup(app)
    blobs.setup(app)
    uploads.setup(app)
    listing.setup(app)
    base.setup(app)
    metrics.setup(app, app_metrics)
    health.setup(app, registry)
    web_ui.setup(app)
    return app


def _auth_service(settings: Settings, db: Database) -> AuthService:
    """The token service with its signing key, and the first administrator on a new registry."""
    from dockyard.auth import accounts
    from dockyard.auth.service import AuthService
    from dockyard.auth.tokens import TokenService, signing_key

    try:
        key = signing_key(settings.token_key, settings.token_key_file, settings.data_dir)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        generated = db.run_sync(accounts.ensure_admin, settings.admin_password or None)
    except sa.exc.IntegrityError:  # another replica starting at the same moment created it first
        generated = None
    if generated:
        print(
            f"dockyard: created user 'admin' with password {generated} (shown once; change it with "
            "'dockyard user passwd admin')",
            flush=True,
        )
    return AuthService(db, TokenService(key, settings.auth_service))


async def serve(settings: Settings, worker: int | None = None, ready: Callable[[], object] | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then stop accepting and let in-flight requests finish.

    aiohttp's ``run_app`` turns the signal into an exception that ends up cancelling every task,
    and its cleanup stops reading request bodies; see ``lifecycle`` for how we drain instead.

    As worker ``worker`` of ``serve --workers`` (see ``dockyard.workers``): the port is shared
    with the other workers (SO_REUSEPORT: the kernel spreads new connections over them), the
    database was migrated by the supervisor, only SIGTERM (from the supervisor) stops it, and so
    does the supervisor's death. ``ready`` is called once the port is open.
    """
    if worker is not None and settings.metrics_port > 0:
        # Traffic counters are per process: each worker's own /metrics port, port + worker.
        settings = dataclasses.replace(settings, metrics_port=settings.metrics_port + worker)
    app = create_app(settings, migrate=worker is None)
    runner = web.AppRunner(
        app,
        access_log=None,
        read_bufsize=1 << 20,
        shutdown_timeout=settings.shutdown_timeout,
    )
    await runner.setup()
    ssl_context = server_ssl_context(settings)
    site = web.TCPSite(
        runner, settings.host, settings.port, ssl_context=ssl_context, reuse_port=True if worker is not None else None
    )
    try:
        await site.start()
    except OSError as exc:  # the port is taken, or the address is not this machine's
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM) if worker is None else (signal.SIGTERM,):
        loop.add_signal_handler(signum, stop.set)
    if worker is not None and (parent := multiprocessing.parent_process()) is not None:
        # Readable once the supervisor is gone: stop rather than serve on as an orphan.
        def orphaned(fd: int = parent.sentinel) -> None:
            loop.remove_reader(fd)  # it stays readable: once is enough
            stop.set()

        loop.add_reader(parent.sentinel, orphaned)
    scheme = "https" if ssl_context else "http"
    who = "dockyard" if worker is None else f"dockyard worker {worker} (pid {os.getpid()})"
    print(f"{who} listening on {scheme}://{settings.host}:{settings.port}", flush=True)
    metrics_runner = await metrics.start_port(app, settings)  # /metrics on its own port, if configured
    if ready is not None:
        ready()
    try:
        await stop.wait()
        print(f"{who} stopping: draining in-flight requests", flush=True)
        await site.stop()
        if not await app[INFLIGHT].drain(settings.shutdown_timeout):
            print(f"{who}: shutdown timeout reached, cutting off the remaining requests", flush=True)
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()


def prepare(settings: Settings) -> None:
    """What must happen once before several workers start: the schema migrated, the first admin
    created (its generated password printed once), the token key and the TLS certificate made."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        db.migrate()
        if settings.auth == "token":
            _auth_service(settings, db)
    finally:
        db.close()
    server_ssl_context(settings)


def run(settings: Settings) -> None:
    asyncio.run(serve(settings))
