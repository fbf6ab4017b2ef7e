"""Typed access to the objects the application holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from dockyard.api.lifecycle import InFlight
from dockyard.auth.audit import AuditLog
from dockyard.registry.schedule import Schedule
from dockyard.registry.service import Registry
from dockyard.registry.usage_report import Prices
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


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]
