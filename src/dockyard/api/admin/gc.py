"""``/api/v1/gc``: run a garbage collection now (or a dry run) and list recent runs.

Site administrators only: a collection spans every repository. The run happens in this server,
so its caches are refreshed at once; the lease makes a request that arrives while a scheduled
run or a ``dockyard gc`` holds it answer 409 rather than wait.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import ApiError, bad_request, caller, db_of, require_site_admin, timestamp
from dockyard.api.state import SCHEDULE
from dockyard.registry import jobs
from dockyard.registry.gc import CollectionBusy


def _flag(request: web.Request, key: str) -> bool:
    raw = body.query(request, key)
    if raw is None:
        return False
    if raw.lower() not in ("true", "false", "1", "0"):
        raise bad_request(f"{key} must be true or false")
    return raw.lower() in ("true", "1")


async def run_gc(request: web.Request) -> web.Response:
    require_site_admin(await caller(request))
    dry_run = _flag(request, "dry_run")
    try:
        report = await request.config_dict[SCHEDULE].run_once("api", dry_run=dry_run)
    except CollectionBusy as busy:
        raise ApiError(409, "BUSY", str(busy)) from None
    summary = report.as_dict()
    summary["removed"] = summary["removed"][:1000]
    return web.json_response(summary)


async def list_runs(request: web.Request) -> web.Response:
    require_site_admin(await caller(request))
    job = body.query(request, "job") or "gc"
    if job not in ("gc", "retention"):
        raise bad_request("job must be gc or retention")
    runs = await db_of(request).read(jobs.recent_runs, job, 50)
    for run in runs:
        run["started_at"], run["finished_at"] = timestamp(run["started_at"]), timestamp(run["finished_at"])
    return web.json_response({"runs": runs})


ROUTES = [("POST", "/gc", run_gc), ("GET", "/gc/runs", list_runs)]
