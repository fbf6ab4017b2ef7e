"""``/api/v1/usage``: stored bytes, activity and cost estimates, as ``dockyard usage --json``.

Everyone sees the repositories they can pull, and namespaces summarised over those repositories
only (``complete`` says whether that is all of the namespace; its quota is shown only then, since
the quota counts repositories the caller may not know about). The registry's totals are for site
administrators. A repository the caller cannot read is a 404, exactly like one that does not
exist, as on the registry API.
"""

from __future__ import annotations

import time

from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import bad_request, caller, db_of, not_found
from dockyard.api.state import PRICES, holdings_of
from dockyard.auth.access import readable_repositories
from dockyard.registry import usage_report
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name


def _days(request: web.Request) -> int:
    raw = body.query(request, "days")
    if raw is None:
        return 30
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= usage_report.MAX_DAYS:
        raise bad_request(f"days must be an integer from 1 to {usage_report.MAX_DAYS}")
    return int(raw)


def _name(value: str, what: str) -> str:
    try:
        validate_name(value)
    except RegistryError:
        raise bad_request(f"invalid {what} name {value!r}") from None
    if what == "namespace" and "/" in value:
        raise bad_request(f"a namespace is one path component, not {value!r}")
    return value


async def get_usage(request: web.Request) -> web.Response:
    who = await caller(request)
    days = _days(request)
    namespace = body.query(request, "namespace")
    if namespace is not None:
        _name(namespace, "namespace")
    prices = request.config_dict[PRICES]
    found = await db_of(request).read(
        lambda conn: usage_report.report(
            conn,
            prices,
            days=days,
            now=time.time(),
            visible=lambda names: readable_repositories(conn, who.principal, names),
            holdings=holdings_of(request, conn),
            namespace=namespace,
            totals=who.is_admin,
        )
    )
    return web.json_response(found.as_json())


async def get_repository_usage(request: web.Request) -> web.Response:
    who = await caller(request)
    name = _name(body.path(request, "name"), "repository")
    days = _days(request)
    prices = request.config_dict[PRICES]
    found = await db_of(request).read(
        lambda conn: usage_report.report(
            conn,
            prices,
            days=days,
            now=time.time(),
            visible=lambda names: readable_repositories(conn, who.principal, names),
            holdings=holdings_of(request, conn),
            repository=name,
            totals=False,
            daily=True,
        )
    )
    if not found.repositories:
        raise not_found(f"no repository named {name!r}")
    report = found.as_json()
    return web.json_response(
        {key: report[key] for key in ("generated_at", "days", "since", "until", "prices")}
        | {"repository": report["repositories"][0]}
    )


ROUTES = [
    ("GET", "/usage", get_usage),
    ("GET", "/usage/repositories/{name:.+}", get_repository_usage),
]
