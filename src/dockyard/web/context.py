"""What every page handler needs: the services of the application, who is signed in, and the
answer for a page the caller may not see."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.state import AUTH, REGISTRY
from dockyard.auth.permissions import ANONYMOUS, Principal
from dockyard.meta.db import Database
from dockyard.registry.service import Registry
from dockyard.web import sessions


def registry_of(request: web.Request) -> Registry:
    return request.config_dict[REGISTRY]


def db_of(request: web.Request) -> Database:
    return registry_of(request).db


def accounts_enabled(request: web.Request) -> bool:
    """False on an open registry (``auth = "none"``): no sign-in, everything is public."""
    return AUTH in request.config_dict


async def principal(request: web.Request) -> Principal:
    session = await sessions.current(request)
    return session.principal if session is not None else ANONYMOUS


async def readable(request: web.Request, names: list[str]) -> list[str]:
    """Which of ``names`` the visitor may see: all of them on an open registry."""
    if not accounts_enabled(request):
        return names
    return await request.config_dict[AUTH].readable(await principal(request), names)
