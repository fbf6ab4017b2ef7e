"""Typed access to the objects the application holds."""

from aiohttp import web

from dockyard.api.lifecycle import InFlight
from dockyard.registry.service import Registry

REGISTRY = web.AppKey("registry", Registry)
INFLIGHT = web.AppKey("inflight", InFlight)


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]
