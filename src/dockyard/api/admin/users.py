"""``/api/v1/users``: site admins manage users; everyone changes their own password.

Two refusals the CLI does not make, because a web session is easier to misuse than a shell on
the server: nobody removes their own account through the API (the last site admin would lock
everyone out), and changing one's own password needs the current one (a token left in a browser
must not be enough to take the account over).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import (
    Caller,
    bad_request,
    caller,
    db_of,
    denied,
    no_content,
    not_found,
    record,
    require_site_admin,
    timestamp,
)
from dockyard.auth import accounts, administration

MAX_PASSWORD = 1024


def user_json(user: accounts.User) -> dict[str, Any]:
    created = timestamp(user.created_at)
    return {"name": user.name, "admin": user.is_admin, "disabled": user.disabled, "created_at": created}


async def all_users(request: web.Request, who: Caller) -> list[accounts.User]:
    """Every user: for site admins. Each operation below is shared by this API and the web UI."""
    require_site_admin(who)
    return await db_of(request).read(accounts.list_users)


async def list_users(request: web.Request) -> web.Response:
    found = await all_users(request, await caller(request))
    return web.json_response({"users": [user_json(u) for u in found]})


def _add_user(conn: sa.Connection, name: str, password: str, admin: bool) -> accounts.User:
    accounts.add_user(conn, name, password, admin)
    user = administration.user_named(conn, name)
    assert user is not None
    return user


async def add_user(request: web.Request, who: Caller, name: str, password: str, admin: bool) -> accounts.User:
    require_site_admin(who)
    user = await db_of(request).run(_add_user, name, password, admin)
    record(request, who, f"create user {name}" + (" as a site administrator" if admin else ""))
    return user


async def create_user(request: web.Request) -> web.Response:
    who = await caller(request)
    require_site_admin(who)
    data = await body.json_object(request, {"name", "password", "admin"})
    name = body.text(data, "name")
    password = body.text(data, "password", MAX_PASSWORD)
    admin = body.flag(data, "admin")
    user = await add_user(request, who, name, password, admin)
    return web.json_response(user_json(user), status=201)


def _remove_user(conn: sa.Connection, name: str) -> None:
    if not administration.user_exists(conn, name):
        raise not_found(f"no user named {name!r}")
    accounts.remove_user(conn, name)


async def remove_user(request: web.Request, who: Caller, name: str) -> None:
    require_site_admin(who)
    if name == who.name:
        raise bad_request("you cannot remove your own account")
    await db_of(request).run(_remove_user, name)
    record(request, who, f"remove user {name}")


async def delete_user(request: web.Request) -> web.Response:
    who = await caller(request)
    require_site_admin(who)
    await remove_user(request, who, body.path(request, "name"))
    return no_content()


def _set_disabled(conn: sa.Connection, name: str, disabled: bool) -> accounts.User:
    if not administration.user_exists(conn, name):
        raise not_found(f"no user named {name!r}")
    accounts.set_disabled(conn, name, disabled)
    user = administration.user_named(conn, name)
    assert user is not None
    return user


async def set_disabled(request: web.Request, who: Caller, name: str, disabled: bool) -> accounts.User:
    """Disable or enable a user (site admins; not oneself, for the reason one cannot remove
    oneself). A disabled user's logins, tokens and web sessions stop working at once; their
    grants and memberships stay for when they are enabled again."""
    require_site_admin(who)
    if name == who.name:
        raise bad_request("you cannot disable your own account")
    user = await db_of(request).run(_set_disabled, name, disabled)
    record(request, who, f"{'disable' if disabled else 'enable'} user {name}")
    return user


async def update_user(request: web.Request) -> web.Response:
    """``PATCH /users/{name}`` with ``{"disabled": true|false}``: the one field an administrator
    changes in place (passwords have their own route; the admin flag is set at creation)."""
    who = await caller(request)
    require_site_admin(who)
    name = body.path(request, "name")
    data = await body.json_object(request, {"disabled"})
    if "disabled" not in data:
        raise bad_request("field 'disabled' is required", {"field": "disabled"})
    user = await set_disabled(request, who, name, body.flag(data, "disabled"))
    return web.json_response(user_json(user))


def _set_password(conn: sa.Connection, name: str, password: str, current: str | None) -> None:
    if current is not None and accounts.authenticate_password(conn, name, current) is None:
        raise denied("the current password is wrong")
    if not administration.user_exists(conn, name):
        raise not_found(f"no user named {name!r}")
    accounts.set_password(conn, name, password)


async def set_password(request: web.Request) -> web.Response:
    who = await caller(request)
    name = body.path(request, "name")
    data = await body.json_object(request, {"password", "current_password"})
    password = body.text(data, "password", MAX_PASSWORD)
    current = body.optional_text(data, "current_password", MAX_PASSWORD)
    await change_password(request, who, name, password, current)
    return no_content()


async def change_password(request: web.Request, who: Caller, name: str, password: str, current: str | None) -> None:
    """One's own password (with the current one), or anyone's for a site admin."""
    if name == who.name:
        if current is None:
            raise bad_request("changing your own password needs 'current_password'", {"field": "current_password"})
    elif who.is_admin:
        current = None  # a site admin resets someone else's password without knowing it
    else:
        raise denied("you may only change your own password")
    await db_of(request).run(_set_password, name, password, current)
    record(request, who, f"{'change' if name == who.name else 'reset'} the password of user {name}")


ROUTES = [
    ("GET", "/users", list_users),
    ("POST", "/users", create_user),
    ("DELETE", "/users/{name}", delete_user),
    ("PATCH", "/users/{name}", update_user),
    ("PUT", "/users/{name}/password", set_password),
]
