"""Signing in and out of the web UI, with the registry's accounts and its login throttle."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from dockyard.api.auditing import audit
from dockyard.api.state import AUTH
from dockyard.web import sessions
from dockyard.web.context import accounts_enabled, db_of
from dockyard.web.render import page


def _safe_next(target: str | None) -> str:
    """Only a path on this site: an open redirect would let a phishing link borrow our name."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


async def login_form(request: web.Request) -> web.Response:
    if not accounts_enabled(request):
        raise web.HTTPFound("/")
    if await sessions.current(request) is not None:
        raise web.HTTPFound(_safe_next(request.query.get("next")))
    return await page(request, "login.html", title="Sign in", next=_safe_next(request.query.get("next")), username="")


async def login(request: web.Request) -> web.Response:
    if not accounts_enabled(request):
        raise web.HTTPFound("/")
    form = await sessions.checked_form(request, None)
    username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:1024]
    target = _safe_next(str(form.get("next", "")))
    auth = request.config_dict[AUTH]
    client = request.remote or ""
    wait = await auth.throttle.retry_after(client)
    if wait is not None:
        audit(request, "login", outcome="denied", detail="web: too many failed logins", actor=username)
        response = await page(
            request, "login.html", status=429, title="Sign in", next=target, username=username,
            error=f"Too many failed sign-ins from your address. Try again in {wait} seconds.",
        )  # fmt: skip
        response.headers["Retry-After"] = str(wait)
        return response
    found = await auth.login(username, password) if username and password else None
    # Only a person's password opens a browser session: tokens and robots are for clients.
    if found is None or found[1] is not None or found[0].kind != "user":
        await auth.throttle.failed(client)
        audit(request, "login", outcome="failed", detail="web", actor=username)
        return await page(
            request, "login.html", status=401, title="Sign in", next=target, username=username,
            error="Incorrect username or password.",
        )  # fmt: skip
    token, _ = await db_of(request).run(sessions.create, found[0])
    audit(request, "login", detail="web", actor=found[0].name)
    response = web.HTTPSeeOther(target)
    sessions.set_cookie(request, response, token)
    raise response


async def logout(request: web.Request) -> web.Response:
    session = await sessions.current(request)
    if session is not None:
        await sessions.checked_form(request, session)
        await db_of(request).run(sessions.delete, request.cookies[sessions.COOKIE])
    response = web.HTTPSeeOther("/")
    sessions.clear_cookie(response)
    raise response


ROUTES = [("GET", "/login", login_form), ("POST", "/login", login), ("POST", "/logout", logout)]
