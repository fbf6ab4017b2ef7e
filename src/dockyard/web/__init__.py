"""The web UI, served by ``dockyard serve`` at ``/``: server-rendered pages (Jinja2) over the same
registry, accounts and permissions as the API, with a little JavaScript for copy buttons.

Pages live in ``pages/`` (one module per area); ``render`` holds the templates and escaping,
``sessions`` the cookie sessions and CSRF checks, ``context`` what handlers share.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from dockyard.api.errors import Handler
from dockyard.web.pages import admin, admin_audit, admin_lifecycle, admin_people, repositories, signin, usage
from dockyard.web.render import page

STATIC = Path(__file__).parent / "static"
PAGE_MODULES = [signin, usage, repositories, admin, admin_people, admin_lifecycle, admin_audit]
# Everything else answers machines, in their formats (the registry's and the API's JSON errors).
_NOT_PAGES = ("/v2", "/api/", "/token", "/metrics", "/healthz", "/readyz", "/static/")
_TITLES = {403: "Not allowed", 404: "Not found", 405: "Not allowed"}


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A person who mistypes a URL or whose form is refused gets a page, not ``404: Not Found``."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status not in _TITLES or request.path.startswith(_NOT_PAGES):
            raise
        message = exc.text if exc.status == 403 and exc.text else "This page was not found."
        if exc.status == 405:
            message = "This address does not accept that kind of request."
        return await page(request, "error.html", status=exc.status, title=_TITLES[exc.status], message=message)


def setup(app: web.Application) -> None:
    for module in PAGE_MODULES:
        for method, path, handler in module.ROUTES:
            app.router.add_route(method, path, handler)
    app.router.add_static("/static", STATIC, append_version=False)
