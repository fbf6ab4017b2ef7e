"""The JSON admin API under ``/api/v1``: users, organizations, teams, grants, visibility,
personal access tokens and robots, with the permissions of the ``dockyard`` CLI spread over the
people they concern (see ``common`` for authentication and the rules).

It is a sub-application mounted at the prefix, for one reason: its middleware then sees every
request under ``/api/v1``, router misses included, so that an unknown path or a wrong method
answers in the API's JSON error shape like everything else. It exists only with token
authentication (``settings.auth == "token"``): without accounts there is nothing to manage.
"""

from __future__ import annotations

from aiohttp import web

from dockyard.api.admin import audit, gc, grants, me, openapi, orgs, policies, usage, users, webhooks
from dockyard.api.admin.common import json_errors

PREFIX = "/api/v1"
ROUTES = [*openapi.ROUTES, *me.ROUTES, *users.ROUTES, *orgs.ROUTES, *grants.ROUTES, *audit.ROUTES, *webhooks.ROUTES,
          *policies.ROUTES, *usage.ROUTES, *gc.ROUTES]


def create() -> web.Application:
    api = web.Application(middlewares=[json_errors])
    for method, path, handler in ROUTES:
        api.router.add_route(method, path, handler)
    return api


def setup(app: web.Application) -> None:
    """Mount the admin API on ``app``, which must hold the ``AUTH`` service."""
    app.add_subapp(PREFIX, create())
