"""``/api/v1/me``: who the caller is, and their personal access tokens.

``GET /me`` is what the web UI asks first, to know which pages to offer: site admin, the
organizations the caller administers, their teams. It is the one endpoint a robot may call, so that
a CI job can check which credential it runs with.

A token's secret is in the answer to its creation and nowhere else: the database keeps a hash.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import Caller, caller, db_of, no_content, not_found, record, timestamp
from dockyard.auth import administration, credentials
from dockyard.auth.permissions import Principal

MAX_TOKEN_DAYS = 3650  # ten years: past that, "never" says it better
_SCOPE_NAMES = {level: name for name, level in credentials.SCOPES.items()}


def _me(conn: sa.Connection, principal: Principal) -> dict[str, Any]:
    if principal.kind != "user" or principal.id is None:
        return {"teams": [], "organizations": []}
    return {
        "teams": administration.teams_of(conn, principal.id),
        "organizations": [{"name": n, "admin": a} for n, a in administration.organizations_of(conn, principal)],
    }


async def get_me(request: web.Request) -> web.Response:
    who = await caller(request, robots=True)
    if who.credential is None:
        credential: dict[str, Any] = {"type": "password", "scope": None}
    elif who.credential.startswith("pat:"):
        credential = {"type": "token", "scope": _SCOPE_NAMES.get(who.cap)}
    else:
        credential = {"type": "robot", "scope": None}
    found = await db_of(request).read(_me, who.principal)
    return web.json_response(
        {"name": who.name, "kind": who.principal.kind, "admin": who.is_admin, "credential": credential, **found}
    )


def token_json(token: credentials.AccessToken) -> dict[str, Any]:
    return {
        "name": token.name,
        "scope": token.scope,
        "state": token.state(),
        "created_at": timestamp(token.created_at),
        "expires_at": timestamp(token.expires_at),
        "last_used_at": timestamp(token.last_used_at),
        "revoked_at": timestamp(token.revoked_at),
    }


async def own_tokens(request: web.Request, who: Caller) -> list[credentials.AccessToken]:
    return await db_of(request).read(credentials.list_tokens, who.name)


async def list_tokens(request: web.Request) -> web.Response:
    found = await own_tokens(request, await caller(request))
    return web.json_response({"tokens": [token_json(t) for t in found]})


def _create_token(
    conn: sa.Connection, user: str, name: str, scope: str, days: int | None
) -> tuple[credentials.AccessToken, str]:
    token_id, secret = credentials.create_token(conn, user, name, scope, days)
    token = next(t for t in credentials.list_tokens(conn, user) if t.id == token_id)
    return token, secret


async def add_own_token(
    request: web.Request, who: Caller, name: str, scope: str, days: int | None
) -> tuple[credentials.AccessToken, str]:
    """Create one of the caller's tokens, audited; the secret returned exists nowhere else.
    Shared by this API and the web UI's token page."""
    token, secret = await db_of(request).run(_create_token, who.name, name, scope, days)
    record(request, who, f"create token {name} (scope {scope}, {f'expires in {days} days' if days else 'no expiry'})")
    return token, secret


async def create_token(request: web.Request) -> web.Response:
    who = await caller(request)
    data = await body.json_object(request, {"name", "scope", "expires_in_days"})
    name = body.text(data, "name")
    scope = body.choice(data, "scope", tuple(credentials.SCOPES), "read")
    days = body.positive_int(data, "expires_in_days", MAX_TOKEN_DAYS)
    token, secret = await add_own_token(request, who, name, scope, days)
    return web.json_response({**token_json(token), "secret": secret}, status=201)


def _revoke_token(conn: sa.Connection, user: str, name: str) -> None:
    if not any(t.name == name and t.revoked_at is None for t in credentials.list_tokens(conn, user)):
        raise not_found(f"you have no unrevoked token named {name!r}")
    credentials.revoke_token(conn, user, name)


async def revoke_own_token(request: web.Request, who: Caller, name: str) -> None:
    await db_of(request).run(_revoke_token, who.name, name)
    record(request, who, f"revoke token {name}")


async def revoke_token(request: web.Request) -> web.Response:
    who = await caller(request)
    await revoke_own_token(request, who, body.path(request, "name"))
    return no_content()


ROUTES = [
    ("GET", "/me", get_me),
    ("GET", "/me/tokens", list_tokens),
    ("POST", "/me/tokens", create_token),
    ("DELETE", "/me/tokens/{name}", revoke_token),
]
