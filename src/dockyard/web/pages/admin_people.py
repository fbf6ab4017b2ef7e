"""Administration of people: users (site admins), organizations, and inside an organization its
teams and members, the grants on its namespace and its robot accounts (its administrators).

Who may do what is the admin API's rule, applied by the operation each handler calls
(``api.admin.users``, ``orgs``, ``grants``): an organization's page is a 403 for anyone who does
not administer it, whether or not it exists, exactly as ``GET /api/v1/orgs/{org}/teams`` is.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api.admin import grants, orgs, users
from dockyard.api.admin.common import Caller
from dockyard.auth.permissions import LEVELS
from dockyard.web.pages.admin_common import (
    FORM_ERRORS,
    admin_page,
    admin_view,
    done,
    field,
    inline,
    password,
    path_part,
    submitted,
    visitor,
)

# -- users -----------------------------------------------------------------------------------


async def _users_page(request: web.Request, who: Caller, status: int = 200, **context: Any) -> web.Response:
    context = {"form": {"name": "", "admin": False}, **context}
    found = await users.all_users(request, who)
    return await admin_view(
        request,
        "admin/users.html",
        status=status,
        title="Users",
        section="users",
        users=found,
        **context,
    )


@admin_page
async def users_list(request: web.Request) -> web.Response:
    return await _users_page(request, await visitor(request))


@admin_page
async def create_user(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    values = {"name": field(form, "name"), "admin": form.get("admin") == "on"}
    try:
        await users.add_user(request, who, values["name"], password(form, "password"), values["admin"])
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _users_page(request, who, status=status, error=message, form=values)
    raise done("/admin/users", "user-created")


@admin_page
async def reset_password(request: web.Request) -> web.Response:
    """A site admin sets someone else's password; their own is changed on /admin/password."""
    who, form = await submitted(request)
    try:
        await users.change_password(request, who, request.match_info["name"], password(form, "password"), None)
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _users_page(request, who, status=status, error=message)
    raise done("/admin/users", "password-reset")


@admin_page
async def set_disabled(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    disabled = field(form, "disabled") == "true"
    try:
        await users.set_disabled(request, who, request.match_info["name"], disabled)
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _users_page(request, who, status=status, error=message)
    raise done("/admin/users", "user-disabled" if disabled else "user-enabled")


@admin_page
async def remove_user(request: web.Request) -> web.Response:
    who, _ = await submitted(request)
    try:
        await users.remove_user(request, who, request.match_info["name"])
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _users_page(request, who, status=status, error=message)
    raise done("/admin/users", "user-removed")


# -- organizations ---------------------------------------------------------------------------


async def _orgs_page(request: web.Request, who: Caller, status: int = 200, **context: Any) -> web.Response:
    context = {"form": {"name": ""}, **context}
    return await admin_view(
        request,
        "admin/orgs.html",
        status=status,
        title="Organizations",
        section="orgs",
        organizations=await orgs.visible_orgs(request, who),
        **context,
    )


@admin_page
async def orgs_list(request: web.Request) -> web.Response:
    return await _orgs_page(request, await visitor(request))


@admin_page
async def create_org(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    name = field(form, "name")
    try:
        await orgs.add_org(request, who, name)
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _orgs_page(request, who, status=status, error=message, form={"name": name})
    raise done(f"/admin/orgs/{path_part(name)}", "org-created")


# -- one organization ------------------------------------------------------------------------

_BLANK_GRANT = {"subject_type": "team", "subject": "", "level": "read", "repository": ""}


async def _org_page(request: web.Request, who: Caller, org: str, status: int = 200, **context: Any) -> web.Response:
    """Teams first: ``teams_of`` is the permission check (403 for anyone but the org's admins)."""
    context = {"robot": None, "team_form": "", "robot_form": "", "grant_form": _BLANK_GRANT, **context}
    teams = await orgs.teams_of(request, who, org)
    return await admin_view(
        request,
        "admin/org.html",
        status=status,
        title=f"Organization {org}",
        section="orgs",
        org=org,
        org_path=path_part(org),
        teams=teams,
        robots=await orgs.robots_of(request, who, org),
        grants=await grants.grants_on_target(request, who, org, None),
        subject_types=grants.SUBJECT_TYPES,
        levels=tuple(LEVELS),
        **context,
    )


@admin_page
async def org_page(request: web.Request) -> web.Response:
    return await _org_page(request, await visitor(request), request.match_info["org"])


def _back(org: str) -> str:
    return f"/admin/orgs/{path_part(org)}"


@admin_page
async def create_team(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    org, team = request.match_info["org"], field(form, "name")
    try:
        await orgs.add_team(request, who, org, team)
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _org_page(request, who, org, status=status, error=message, team_form=team)
    raise done(_back(org), "team-created")


@admin_page
async def add_member(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    org, team = request.match_info["org"], request.match_info["team"]
    try:
        await orgs.change_membership(request, who, org, team, field(form, "user"), True)
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _org_page(request, who, org, status=status, error=message)
    raise done(_back(org), "member-added")


@admin_page
async def remove_member(request: web.Request) -> web.Response:
    who, _ = await submitted(request)
    org, team, user = (request.match_info[key] for key in ("org", "team", "user"))
    try:
        await orgs.change_membership(request, who, org, team, user, False)
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _org_page(request, who, org, status=status, error=message)
    raise done(_back(org), "member-removed")


@admin_page
async def give_grant(request: web.Request) -> web.Response:
    """On the whole namespace, or on one of its repositories when one is named."""
    who, form = await submitted(request)
    org = request.match_info["org"]
    values = {key: field(form, key) for key in _BLANK_GRANT}
    repository = values["repository"].removeprefix(f"{org}/") or None
    if repository is not None:
        repository = f"{org}/{repository}"  # the form asks for a repository of this namespace
    try:
        namespace = None if repository is not None else org
        await grants.give(
            request, who, values["subject_type"], values["subject"], values["level"], namespace, repository
        )
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _org_page(request, who, org, status=status, error=message, grant_form=values)
    raise done(_back(org), "grant-given")


@admin_page
async def take_grant(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    org = request.match_info["org"]
    namespace, repository = field(form, "namespace") or None, field(form, "repository") or None
    try:
        await grants.take(request, who, field(form, "subject_type"), field(form, "subject"), namespace, repository)
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _org_page(request, who, org, status=status, error=message)
    raise done(_back(org), "grant-taken")


@admin_page
async def create_robot(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    org, name = request.match_info["org"], field(form, "name")
    try:
        robot, secret = await orgs.add_robot(request, who, org, name)
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _org_page(request, who, org, status=status, error=message, robot_form=name)
    return await _org_page(request, who, org, robot={"name": robot.fullname, "secret": secret})


@admin_page
async def remove_robot(request: web.Request) -> web.Response:
    who, _ = await submitted(request)
    org = request.match_info["org"]
    try:
        await orgs.drop_robot(request, who, org, request.match_info["name"])
    except FORM_ERRORS as error:
        status, message = inline(request, error)
        return await _org_page(request, who, org, status=status, error=message)
    raise done(_back(org), "robot-removed")


ROUTES = [
    ("GET", "/admin/users", users_list),
    ("POST", "/admin/users", create_user),
    ("POST", "/admin/users/{name}/password", reset_password),
    ("POST", "/admin/users/{name}/disabled", set_disabled),
    ("POST", "/admin/users/{name}/remove", remove_user),
    ("GET", "/admin/orgs", orgs_list),
    ("POST", "/admin/orgs", create_org),
    ("GET", "/admin/orgs/{org}", org_page),
    ("POST", "/admin/orgs/{org}/teams", create_team),
    ("POST", "/admin/orgs/{org}/teams/{team}/members", add_member),
    ("POST", "/admin/orgs/{org}/teams/{team}/members/{user}/remove", remove_member),
    ("POST", "/admin/orgs/{org}/grants", give_grant),
    ("POST", "/admin/orgs/{org}/grants/remove", take_grant),
    ("POST", "/admin/orgs/{org}/robots", create_robot),
    ("POST", "/admin/orgs/{org}/robots/{name}/remove", remove_robot),
]
