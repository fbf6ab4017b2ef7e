"""The usage dashboard: storage (unique and shared) and cost per repository and namespace, pulls
and pushes per day, quota headroom, and the recent garbage collection and retention runs.

Who sees what is exactly the usage API's rule (``dockyard.api.admin.usage``), by calling the
same report with the same filter: the repositories the visitor may pull
(``readable_repositories``), namespaces summarised over those only (a namespace's quota only when
the visitor sees all of its repositories), the registry's totals and the job runs for site
administrators. A visitor who is not signed in is, as on the registry API, anonymous: they see
the public repositories (the filter answers that in one query, so no sign-in wall is needed). On
an open registry (``auth = "none"``) there are no accounts and everything is shown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web

from dockyard.api.admin.common import Caller
from dockyard.api.state import PRICES, holdings_of
from dockyard.auth.access import readable_repositories
from dockyard.auth.permissions import ADMIN, Principal
from dockyard.registry import jobs, retention, usage_report
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name
from dockyard.registry.usage_report import Prices, Report, RepositoryUsage
from dockyard.web.charts import daily_chart, storage_chart
from dockyard.web.context import accounts_enabled, db_of, principal
from dockyard.web.render import not_found, page

PAGE_SIZE = 100  # repositories per page of the table: a page stays small with 10,000 of them
CHART_REPOSITORIES = 15  # the storage chart shows the largest few; the table has them all
RUNS_SHOWN = 10
WINDOWS = (7, 30, 90, 365)  # the choices offered; any 1..MAX_DAYS works in the address


@dataclass(frozen=True, slots=True)
class Column:
    """A sortable column of the repository table: its label and the value it sorts by."""

    label: str
    key: Callable[[RepositoryUsage, Prices], Any]
    descending: bool = True  # the first click shows the largest first (names: A to Z)


def _never(value: float | None) -> float:
    return -math.inf if value is None else value


COLUMNS: dict[str, Column] = {
    "name": Column("Repository", lambda r, _p: r.name, descending=False),
    "stored": Column("Stored", lambda r, _p: r.footprint.stored_bytes),
    "unique": Column("Unique", lambda r, _p: r.footprint.unique_bytes),
    "shared": Column("Shared", lambda r, _p: r.footprint.stored_bytes - r.footprint.unique_bytes),
    "attributed": Column("Attributed", lambda r, _p: r.footprint.attributed_bytes),
    "cost": Column(
        "Cost / month", lambda r, p: p.cost(r.footprint.attributed_bytes, r.activity.bytes_served_30d)["total"]
    ),
    "pulls": Column("Pulls", lambda r, _p: r.activity.pulls),
    "pushes": Column("Pushes", lambda r, _p: r.activity.pushes),
    "served": Column("Served", lambda r, _p: r.activity.bytes_served),
    "last_push": Column("Last push", lambda r, _p: _never(r.last_push_at)),
    "last_pull": Column("Last pull", lambda r, _p: _never(r.last_pull_at)),
}
DEFAULT_SORT = "cost"


class BadQuery(Exception):
    """A query parameter out of range: shown to the visitor as a 400 page saying which."""


def money(value: float) -> str:
    """A monthly cost estimate, in the unit the prices are configured in (no currency is known)."""
    if 0 < value < 0.005:
        return "< 0.01"
    return f"{value:,.2f}"


def _days(request: web.Request) -> int:
    """The window, as the usage API reads its ``days``."""
    raw = request.query.get("days", "30")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= usage_report.MAX_DAYS:
        raise BadQuery(f"The number of days must be a whole number from 1 to {usage_report.MAX_DAYS}.")
    return int(raw)


def _page_number(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or int(raw) < 1:
        raise BadQuery("The page must be a whole number from 1.")
    return int(raw)


def _sort(request: web.Request) -> tuple[str, bool]:
    """(column, descending): an unknown column falls back to the default rather than failing."""
    sort = request.query.get("sort", DEFAULT_SORT)
    if sort not in COLUMNS:
        sort = DEFAULT_SORT
    order = request.query.get("order")
    descending = COLUMNS[sort].descending if order not in ("asc", "desc") else order == "desc"
    return sort, descending


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking, as the usage API sees a caller: whose repositories, and whether the
    registry-wide figures (totals, job runs) are theirs to see."""

    principal: Principal
    accounts: bool  # False on an open registry: no accounts, everything shown
    site_admin: bool

    def visible(self, conn: sa.Connection) -> Callable[[list[str]], list[str]] | None:
        if not self.accounts:
            return None
        return lambda names: readable_repositories(conn, self.principal, names)


async def _viewer(request: web.Request) -> Viewer:
    who = await principal(request)
    accounts = accounts_enabled(request)
    # A browser session is a password login: the API's Caller with an admin cap, and its rule.
    site_admin = not accounts or Caller(who, None, ADMIN).is_admin
    return Viewer(who, accounts, site_admin)


def _bad_request(request: web.Request, message: str) -> Any:
    return page(request, "error.html", status=400, title="Bad request", message=message)


def _link(request: web.Request, **changes: Any) -> str:
    """This page's address with some parameters changed (the rest, such as the window, kept)."""
    query = {k: v for k, v in request.query.items() if k in ("days", "sort", "order", "page")}
    query.update({k: str(v) for k, v in changes.items()})
    return f"{request.path}?{urlencode(query)}"


def _runs(conn: sa.Connection) -> dict[str, list[dict[str, Any]]]:
    return {"gc": jobs.recent_runs(conn, "gc", RUNS_SHOWN), "retention": retention.recent_runs(conn, RUNS_SHOWN)}


async def usage_page(request: web.Request) -> web.Response:
    try:
        days, number = _days(request), _page_number(request)
    except BadQuery as bad:
        return await _bad_request(request, str(bad))
    sort, descending = _sort(request)
    viewer = await _viewer(request)
    prices: Prices = request.config_dict[PRICES]

    def gather(conn: sa.Connection) -> tuple[Report, list[dict[str, Any]], dict[str, list[dict[str, Any]]] | None]:
        found = usage_report.report(
            conn,
            prices,
            days=days,
            now=time.time(),
            visible=viewer.visible(conn),
            totals=viewer.site_admin,
            holdings=holdings_of(request, conn),
        )
        # The chart sums the listed repositories' days, in the same transaction as their figures.
        series = usage_report.daily_totals(conn, [r.id for r in found.repositories], found.since, found.until)
        return found, series, _runs(conn) if viewer.site_admin else None

    found, series, runs = await db_of(request).read(gather)
    column = COLUMNS[sort]
    ordered = sorted(found.repositories, key=lambda r: column.key(r, prices), reverse=descending)
    pages = max(1, math.ceil(len(ordered) / PAGE_SIZE))
    number = min(number, pages)
    shown = ordered[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    largest = sorted(found.repositories, key=lambda r: (-r.footprint.stored_bytes, r.name))[:CHART_REPOSITORIES]
    largest = [r for r in largest if r.footprint.stored_bytes > 0]
    storage_title = "Storage per repository" + (
        f" (the {len(largest)} largest)" if len(found.repositories) > len(largest) and largest else ""
    )
    headers = [
        {
            "key": key,
            "label": col.label,
            "href": _link(
                request,
                sort=key,
                order=("asc" if descending else "desc") if key == sort else ("desc" if col.descending else "asc"),
                page=1,
            ),
            "sorted": ("descending" if descending else "ascending") if key == sort else None,
        }
        for key, col in COLUMNS.items()
    ]
    return await page(
        request,
        "usage.html",
        title="Usage",
        nav="usage",
        report=found,
        totals=found.totals.as_json(prices) if found.totals is not None else None,
        viewer=viewer,
        repositories=shown,
        total_repositories=len(ordered),
        first=(number - 1) * PAGE_SIZE + 1,
        page_number=number,
        pages=pages,
        previous=_link(request, page=number - 1) if number > 1 else None,
        next=_link(request, page=number + 1) if number < pages else None,
        headers=headers,
        windows=sorted({*WINDOWS, days}),
        sort=sort,
        order="desc" if descending else "asc",
        namespaces=[(space, space.as_json(prices)) for space in found.namespaces],
        runs=runs,
        money=money,
        cost=lambda r: prices.cost(r.footprint.attributed_bytes, r.activity.bytes_served_30d),
        daily=daily_chart(series, chart_id="daily-activity", title=f"Pulls and pushes per day, last {days} days"),
        storage=storage_chart(
            [(r.name, r.footprint.unique_bytes, r.footprint.stored_bytes - r.footprint.unique_bytes) for r in largest],
            chart_id="storage-per-repository",
            title=storage_title,
        ),
    )


async def repository_usage_page(request: web.Request) -> web.Response:
    """One repository's figures and its own series, day by day: a 404 page for a repository the
    visitor cannot pull, exactly like one that does not exist."""
    name = request.match_info["name"]
    try:
        validate_name(name)
    except RegistryError:
        return await not_found(request, "This repository")
    try:
        days = _days(request)
    except BadQuery as bad:
        return await _bad_request(request, str(bad))
    viewer = await _viewer(request)
    prices: Prices = request.config_dict[PRICES]
    found = await db_of(request).read(
        lambda conn: usage_report.report(
            conn,
            prices,
            days=days,
            now=time.time(),
            visible=viewer.visible(conn),
            holdings=holdings_of(request, conn),
            repository=name,
            totals=False,
            daily=True,
        )
    )
    if not found.repositories:
        return await not_found(request, f"Repository {name}")
    repo = found.repositories[0]
    return await page(
        request,
        "usage_repository.html",
        title=f"Usage of {name}",
        nav="usage",
        report=found,
        repo=repo,
        figures=repo.as_json(prices),
        windows=sorted({*WINDOWS, days}),
        money=money,
        daily=daily_chart(repo.daily or [], chart_id="daily-activity", title=f"Pulls and pushes of {name} per day"),
    )


ROUTES = [
    ("GET", "/usage", usage_page),
    ("GET", "/usage/r/{name:.+}", repository_usage_page),
]
