"""Browser sessions and CSRF protection for the web UI.

A session is a random token in an HttpOnly, SameSite=Lax cookie; the database keeps only its
SHA-256 (like personal access tokens), with the user it belongs to, a CSRF token and an expiry,
so signing out, removing or disabling a user ends their sessions at once. Every state-changing
form carries the session's CSRF token in a hidden field and is refused without it; the Origin
header, when a browser sends one, must also be this site. (SameSite=Lax alone would stop most
cross-site POSTs, but not those from a sibling subdomain, and not older browsers.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from aiohttp import web
from multidict import MultiDictProxy

from dockyard.auth import accounts
from dockyard.auth.permissions import Principal
from dockyard.meta.tables import users, web_sessions

COOKIE = "dockyard_session"
LIFETIME = 12 * 3600.0
_KEY = web.AppKey("web_session_cache", dict)


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: float


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: sa.Connection, principal: Principal) -> tuple[str, Session]:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = time.time()
    conn.execute(
        sa.insert(web_sessions).values(
            id_hash=_hash(token), user_id=principal.id, csrf_token=csrf, created_at=now, expires_at=now + LIFETIME
        )
    )
    return token, Session(principal, csrf, now + LIFETIME)


def load(conn: sa.Connection, token: str) -> Session | None:
    row = conn.execute(
        sa.select(web_sessions.c.user_id, web_sessions.c.csrf_token, web_sessions.c.expires_at)
        .select_from(web_sessions.join(users))
        .where(web_sessions.c.id_hash == _hash(token), web_sessions.c.expires_at > time.time(), ~users.c.disabled)
    ).first()
    if row is None:
        return None
    principal = accounts.principal_by_id(conn, "user", row.user_id)
    return Session(principal, row.csrf_token, row.expires_at) if principal is not None else None


def delete(conn: sa.Connection, token: str) -> None:
    conn.execute(sa.delete(web_sessions).where(web_sessions.c.id_hash == _hash(token)))


def purge_expired(conn: sa.Connection) -> None:
    conn.execute(sa.delete(web_sessions).where(web_sessions.c.expires_at <= time.time()))


async def current(request: web.Request) -> Session | None:
    """The signed-in session of this request, looked up once per request."""
    if "web_session" in request:
        return request["web_session"]
    from dockyard.web.context import db_of  # avoids an import cycle with the page modules

    token = request.cookies.get(COOKIE)
    session = await db_of(request).read(load, token) if token and len(token) < 100 else None
    request["web_session"] = session
    return session


def set_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(
        COOKIE, token, max_age=int(LIFETIME), httponly=True, samesite="Lax", secure=request.secure, path="/"
    )


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None  # "null" comes from sandboxed frames and privacy redirects: refuse
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme == request.scheme


async def checked_form(request: web.Request, session: Session | None) -> MultiDictProxy[str]:
    """The POSTed form, after the CSRF checks; 403 when they fail. Forms of signed-out pages
    (sign-in) pass ``session=None`` and get the Origin check only."""
    if not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin form submission refused")
    form = await request.post()
    if session is not None:
        sent = form.get("csrf", "")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page and try again")
    return form
