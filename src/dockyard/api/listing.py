"""Listings: tags, the catalog and referrers."""

from __future__ import annotations

import json
from urllib.parse import quote

from aiohttp import web

from dockyard.api.auth import principal_of
from dockyard.api.http import next_link, parse_limit
from dockyard.api.state import AUTH, registry_of
from dockyard.registry import mediatypes as mt
from dockyard.registry.names import validate_name

MAX_PAGE = 10000
CATALOG_DEFAULT_PAGE = 1000


def _page(request: web.Request, items: list[str], limit: int | None) -> tuple[list[str], dict[str, str]]:
    """Items were fetched with one extra beyond ``limit`` to learn whether a next page exists."""
    if limit is None or len(items) <= limit or limit == 0:
        return items[:limit], {}
    items = items[:limit]
    return items, {"Link": next_link(request.path, limit, quote(items[-1], safe="/"))}


async def list_tags(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    limit = parse_limit(request, None, MAX_PAGE)
    fetched = await registry_of(request).list_tags(
        name, None if limit is None else limit + 1, request.query.get("last")
    )
    tags, headers = _page(request, fetched, limit)
    return web.json_response({"name": name, "tags": tags}, headers=headers)


async def catalog(request: web.Request) -> web.Response:
    limit = parse_limit(request, CATALOG_DEFAULT_PAGE, MAX_PAGE)
    names, headers = _page(request, await _catalog_names(request, limit), limit)
    return web.json_response({"repositories": names}, headers=headers)


async def _catalog_names(request: web.Request, limit: int | None) -> list[str]:
    """Up to ``limit + 1`` names after ``last`` that the caller can read: with access control,
    pages are fetched and filtered until enough readable names are found."""
    registry = registry_of(request)
    last = request.query.get("last")
    want = None if limit is None else limit + 1
    principal = principal_of(request)
    if principal is None:
        return await registry.catalog(want, last)
    names: list[str] = []
    batch = max(want or 0, 100)
    while want is None or len(names) < want:
        page = await registry.catalog(batch, last)
        names += await request.app[AUTH].readable(principal, page)
        if len(page) < batch:
            break
        last = page[-1]
    return names if want is None else names[:want]


async def referrers(request: web.Request) -> web.Response:
    name = validate_name(request.match_info["name"])
    artifact_type = request.query.get("artifactType") or None
    descriptors = await registry_of(request).referrers(name, request.match_info["digest"], artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
    return web.Response(body=json.dumps(body).encode(), headers=headers, content_type=mt.OCI_INDEX)


def setup(app: web.Application) -> None:
    app.router.add_get("/v2/_catalog", catalog)
    app.router.add_get("/v2/{name:.+}/tags/list", list_tags)
    app.router.add_get("/v2/{name:.+}/referrers/{digest}", referrers)
