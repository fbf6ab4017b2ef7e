"""Typed access to the objects the application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy import Connection

from dockyard.api.lifecycle import InFlight
from dockyard.auth.audit import AuditLog
from dockyard.registry.schedule import Schedule
from dockyard.registry.service import Registry
from dockyard.registry.usage_report import Holdings, HoldingsCache, Prices
from dockyard.registry.webhooks import Webhooks

if TYPE_CHECKING:  # only built when access control is on; see api.app
    from dockyard.auth.service import AuthService

REGISTRY = web.AppKey("registry", Registry)
INFLIGHT = web.AppKey("inflight", InFlight)
AUDIT = web.AppKey("audit", AuditLog)
SCHEDULE = web.AppKey("schedule", Schedule)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
AUTH: web.AppKey[AuthService] = web.AppKey("auth")
PRICES = web.AppKey("prices", Prices)  # for the usage figures' cost estimates


USAGE_HOLDINGS = web.AppKey("usage_holdings", HoldingsCache)


def holdings_of(request: web.Request, conn: Connection) -> Holdings:
    """Who holds what, for a usage report in ``conn``'s transaction: cached until the next write."""
    return request.config_dict[USAGE_HOLDINGS].get(conn, request.config_dict[REGISTRY].generation)


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]
