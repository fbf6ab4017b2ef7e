"""Builds the aiohttp application: one module per endpoint family, wired to one Registry."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from dockyard.api import base, blobs, listing, manifests, uploads
from dockyard.api.errors import errors_middleware
from dockyard.api.state import REGISTRY
from dockyard.config import Settings
from dockyard.meta.db import Database
from dockyard.registry.service import Registry
from dockyard.storage.filesystem import FilesystemDriver


async def _api_version_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("Docker-Distribution-API-Version", "registry/2.0")


def create_app(settings: Settings) -> web.Application:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.migrate()
    storage = FilesystemDriver(settings.data_dir)
    # Hashing, writing, fsync and rename run here so the event loop keeps serving.
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="io")
    app = web.Application(middlewares=[errors_middleware])
    app[REGISTRY] = Registry(db, storage, pool)
    app.on_response_prepare.append(_api_version_header)

    async def close(_app: web.Application) -> None:
        pool.shutdown(wait=True)
        db.close()

    app.on_cleanup.append(close)
    # The router tries routes in order: the pull path (manifests, blobs) goes first. The patterns
    # cannot shadow each other, since a digest or an upload id never contains a slash.
    manifests.setup(app)
    blobs.setup(app)
    uploads.setup(app)
    listing.setup(app)
    base.setup(app)
    return app


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests are drained before exit."""
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout,
        read_bufsize=1 << 20,
        print=lambda msg: print(msg, flush=True),
    )
