"""``/api/v1/orgs``: organizations (site admins create them), and the teams and robots inside
one, which its administrators manage.

Permission is checked before existence: to anyone who may not manage organization X, a missing X
and an existing one both answer 403, so the API does not reveal which organizations exist. Existence
checks run in the same transaction as the change, so a concurrent removal is a 404, not a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import (
    Caller,
    caller,
    db_of,
    no_content,
    not_found,
    record,
    require_org_admin,
    require_site_admin,
    timestamp,
)
from dockyard.auth import accounts, administration, credentials

# Each operation is a function of (request, caller, ...) that checks the rule, makes the change and
# audits it, shared by the handlers here and the web UI's pages; the handlers only parse and answer.


async def visible_orgs(request: web.Request, who: Caller) -> list[tuple[str, bool]]:
    """The organizations the caller sees, each with whether they administer it."""
    return await db_of(request).read(administration.organizations_of, who.principal)


async def list_orgs(request: web.Request) -> web.Response:
    found = await visible_orgs(request, await caller(request))
    return web.json_response({"organizations": [{"name": name, "admin": admin} for name, admin in found]})


async def add_org(request: web.Request, who: Caller, name: str) -> None:
    require_site_admin(who)
    await db_of(request).run(accounts.create_org, name)
    record(request, who, f"create organization {name}", name)


async def create_org(request: web.Request) -> web.Response:
    who = await caller(request)
    require_site_admin(who)
    name = body.text(await body.json_object(request, {"name"}), "name")
    await add_org(request, who, name)
    return web.json_response({"name": name, "admin": True}, status=201)


def _require_org(conn: sa.Connection, org: str) -> None:
    if not administration.org_exists(conn, org):
        raise not_found(f"no organization named {org!r}")


def _require_team(conn: sa.Connection, org: str, team: str) -> None:
    _require_org(conn, org)
    if not administration.team_exists(conn, org, team):
        raise not_found(f"no team {team!r} in organization {org!r}")


# -- teams -------------------------------------------------------------------------------------


def _list_teams(conn: sa.Connection, org: str) -> dict[str, list[str]]:
    _require_org(conn, org)
    return accounts.list_teams(conn, org)


async def teams_of(request: web.Request, who: Caller, org: str) -> dict[str, list[str]]:
    """The organization's teams and their members, for its administrators."""
    await require_org_admin(request, who, org)
    return await db_of(request).read(_list_teams, org)


async def list_teams(request: web.Request) -> web.Response:
    who = await caller(request)
    found = await teams_of(request, who, body.path(request, "org"))
    return web.json_response({"teams": [{"name": name, "members": members} for name, members in found.items()]})


def _create_team(conn: sa.Connection, org: str, team: str) -> None:
    _require_org(conn, org)
    accounts.create_team(conn, org, team)


async def add_team(request: web.Request, who: Caller, org: str, team: str) -> None:
    await require_org_admin(request, who, org)
    await db_of(request).run(_create_team, org, team)
    record(request, who, f"create team {org}/{team}", org)


async def create_team(request: web.Request) -> web.Response:
    who = await caller(request)
    org = body.path(request, "org")
    await require_org_admin(request, who, org)
    team = body.text(await body.json_object(request, {"name"}), "name")
    await add_team(request, who, org, team)
    return web.json_response({"name": team, "members": []}, status=201)


def _add_member(conn: sa.Connection, org: str, team: str, user: str) -> None:
    _require_team(conn, org, team)
    if not administration.user_exists(conn, user):
        raise not_found(f"no user named {user!r}")
    accounts.add_member(conn, org, team, user)


def _remove_member(conn: sa.Connection, org: str, team: str, user: str) -> None:
    _require_team(conn, org, team)
    if user not in accounts.list_teams(conn, org).get(team, []):
        raise not_found(f"{user!r} is not a member of {org}/{team}")
    accounts.remove_member(conn, org, team, user)


async def change_membership(request: web.Request, who: Caller, org: str, team: str, user: str, member: bool) -> None:
    """Add ``user`` to the team (idempotent, like the CLI: adding a member twice is not an error)
    or remove them from it."""
    await require_org_admin(request, who, org)
    change: Callable[[sa.Connection, str, str, str], None] = _add_member if member else _remove_member
    await db_of(request).run(change, org, team, user)
    verb = "add {user} to team {team}" if member else "remove {user} from team {team}"
    record(request, who, verb.format(user=user, team=f"{org}/{team}"), org)


async def _membership(request: web.Request, member: bool) -> web.Response:
    who = await caller(request)
    org, team, user = body.path(request, "org"), body.path(request, "team"), body.path(request, "user")
    await change_membership(request, who, org, team, user, member)
    return no_content()


async def add_member(request: web.Request) -> web.Response:
    return await _membership(request, True)


async def remove_member(request: web.Request) -> web.Response:
    return await _membership(request, False)


# -- robots ------------------------------------------------------------------------------------


def robot_json(robot: credentials.Robot) -> dict[str, Any]:
    return {"name": robot.fullname, "created_at": timestamp(robot.created_at)}


def _list_robots(conn: sa.Connection, org: str) -> list[credentials.Robot]:
    _require_org(conn, org)
    return credentials.list_robots(conn, org)


async def robots_of(request: web.Request, who: Caller, org: str) -> list[credentials.Robot]:
    await require_org_admin(request, who, org)
    return await db_of(request).read(_list_robots, org)


async def list_robots(request: web.Request) -> web.Response:
    who = await caller(request)
    found = await robots_of(request, who, body.path(request, "org"))
    return web.json_response({"robots": [robot_json(r) for r in found]})


def _create_robot(conn: sa.Connection, org: str, name: str) -> tuple[credentials.Robot, str]:
    _require_org(conn, org)
    fullname, secret = credentials.create_robot(conn, org, name)
    robot = next(r for r in credentials.list_robots(conn, org) if r.fullname == fullname)
    return robot, secret


async def add_robot(request: web.Request, who: Caller, org: str, name: str) -> tuple[credentials.Robot, str]:
    """The secret returned exists nowhere else. The robot can do nothing until given grants."""
    await require_org_admin(request, who, org)
    robot, secret = await db_of(request).run(_create_robot, org, name)
    record(request, who, f"create robot {robot.fullname}", org)
    return robot, secret


async def create_robot(request: web.Request) -> web.Response:
    """The secret is in this answer only."""
    who = await caller(request)
    org = body.path(request, "org")
    await require_org_admin(request, who, org)
    name = body.text(await body.json_object(request, {"name"}), "name")
    robot, secret = await add_robot(request, who, org, name)
    return web.json_response({**robot_json(robot), "secret": secret}, status=201)


def _remove_robot(conn: sa.Connection, org: str, name: str) -> None:
    _require_org(conn, org)
    if not administration.robot_exists(conn, org, name):
        raise not_found(f"no robot {name!r} in organization {org!r}")
    credentials.remove_robot(conn, org, name)


async def drop_robot(request: web.Request, who: Caller, org: str, name: str) -> None:
    await require_org_admin(request, who, org)
    await db_of(request).run(_remove_robot, org, name)
    record(request, who, f"remove robot {org}{accounts.ROBOT_SEPARATOR}{name}", org)


async def remove_robot(request: web.Request) -> web.Response:
    who = await caller(request)
    await drop_robot(request, who, body.path(request, "org"), body.path(request, "name"))
    return no_content()


ROUTES = [
    ("GET", "/orgs", list_orgs),
    ("POST", "/orgs", create_org),
    ("GET", "/orgs/{org}/teams", list_teams),
    ("POST", "/orgs/{org}/teams", create_team),
    ("PUT", "/orgs/{org}/teams/{team}/members/{user}", add_member),
    ("DELETE", "/orgs/{org}/teams/{team}/members/{user}", remove_member),
    ("GET", "/orgs/{org}/robots", list_robots),
    ("POST", "/orgs/{org}/robots", create_robot),
    ("DELETE", "/orgs/{org}/robots/{name}", remove_robot),
]
