"""``/api/v1/grants`` and repository visibility: who may do what where.

Whoever administers a target manages access to it: a namespace's administrators (its owner, an
organization's admins, site admins) grant on the namespace and every repository in it; a
repository's administrators (an ADMIN grant on just that repository) grant on that repository and
set its visibility. That is the same rule the registry applies to the ``*`` action.

Grants are listed either by target (``?namespace=`` or ``?repository=``; the target's
administrators see all of them) or by subject (``?subject_type=&subject=``). A subject's whole list
is shown to a site admin, to the user themselves, and to the administrators of a team's or robot's
organization; anyone else sees only the grants on targets they administer, and an empty list for a
subject that does not exist, so that the listing does not tell strangers who exists.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import Caller, bad_request, caller, db_of, denied, no_content, not_found, record
from dockyard.auth import accounts, administration
from dockyard.auth import audit as audit_log
from dockyard.auth.permissions import LEVELS, Principal
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name

SUBJECT_TYPES = ("user", "team", "robot")


def grant_json(grant: accounts.Grant) -> dict[str, Any]:
    return {
        "subject_type": grant.subject_type,
        "subject": grant.subject,
        "namespace": grant.namespace,
        "repository": grant.repository,
        "level": grant.level_name,
    }


def _check_target(namespace: str | None, repository: str | None) -> None:
    if (namespace is None) == (repository is None):
        raise bad_request("give exactly one of 'namespace' or 'repository'")
    name = str(namespace if namespace is not None else repository)
    try:
        validate_name(name)
    except RegistryError:
        raise bad_request(f"invalid {'namespace' if namespace is not None else 'repository'} name {name!r}") from None
    if namespace is not None and "/" in namespace:
        raise bad_request(f"a namespace is one path component, not {namespace!r}")


_SUBJECT_SHAPES = {"team": ("/", "organization/team"), "robot": (accounts.ROBOT_SEPARATOR, "organization+name")}


def _check_subject(subject_type: str | None, subject: str | None) -> tuple[str, str]:
    if subject_type not in SUBJECT_TYPES:
        raise bad_request(f"'subject_type' must be one of {', '.join(SUBJECT_TYPES)}", {"field": "subject_type"})
    if not subject:
        raise bad_request("missing 'subject'", {"field": "subject"})
    if subject_type in _SUBJECT_SHAPES:
        separator, shape = _SUBJECT_SHAPES[subject_type]
        first, sep, rest = subject.partition(separator)
        if not (first and sep and rest):
            raise bad_request(f"a {subject_type} is named as {shape}, not {subject!r}", {"field": "subject"})
    return subject_type, subject


def _organization_of(subject_type: str, subject: str) -> str | None:
    separator = {"team": "/", "robot": accounts.ROBOT_SEPARATOR}.get(subject_type)
    return subject.partition(separator)[0] if separator else None


def _require_target_admin(
    conn: sa.Connection, principal: Principal, namespace: str | None, repository: str | None
) -> None:
    if not administration.administered(conn, principal).target(namespace, repository):
        if namespace is not None:
            raise denied(f"you do not administer {namespace + '/*'!r}", namespace)
        raise denied(f"you do not administer {repository!r}", repository)


def _require_subject(conn: sa.Connection, subject_type: str, subject: str) -> None:
    if not administration.subject_exists(conn, subject_type, subject):
        raise not_found(f"no {subject_type} named {subject!r}")


# -- listing -----------------------------------------------------------------------------------


def _grants_of_subject(
    conn: sa.Connection, principal: Principal, subject_type: str, subject: str
) -> list[accounts.Grant]:
    scope = administration.administered(conn, principal)
    org = _organization_of(subject_type, subject)
    whole = (
        scope.everything
        or (subject_type == "user" and subject == principal.name and principal.kind == "user")
        or (org is not None and scope.namespace(org))
    )
    if not administration.subject_exists(conn, subject_type, subject):
        if whole:
            raise not_found(f"no {subject_type} named {subject!r}")
        return []
    found = accounts.list_grants(conn, subject_type, subject)
    return found if whole else [g for g in found if scope.target(g.namespace, g.repository)]


def _grants_on_target(
    conn: sa.Connection, principal: Principal, namespace: str | None, repository: str | None
) -> list[accounts.Grant]:
    _require_target_admin(conn, principal, namespace, repository)
    return administration.grants_on(conn, namespace, repository)


# Each operation is a function of (request, caller, ...) that checks the input and the rule, makes
# the change and audits it, shared by the handlers here and the web UI's pages.


async def grants_on_target(
    request: web.Request, who: Caller, namespace: str | None, repository: str | None
) -> list[accounts.Grant]:
    """Every grant on a namespace (and its repositories) or on one repository, for its administrators."""
    _check_target(namespace, repository)
    return await db_of(request).read(_grants_on_target, who.principal, namespace, repository)


async def list_grants(request: web.Request) -> web.Response:
    who = await caller(request)
    subject_type, subject = body.query(request, "subject_type"), body.query(request, "subject")
    namespace, repository = body.query(request, "namespace"), body.query(request, "repository")
    db = db_of(request)
    if subject_type is not None or subject is not None:
        if namespace is not None or repository is not None:
            raise bad_request("list grants by subject or by target, not both")
        subject_type, subject = _check_subject(subject_type, subject)
        found = await db.read(_grants_of_subject, who.principal, subject_type, subject)
    else:
        found = await grants_on_target(request, who, namespace, repository)
    return web.json_response({"grants": [grant_json(g) for g in found]})


# -- changes -----------------------------------------------------------------------------------


def _grant(
    conn: sa.Connection,
    principal: Principal,
    subject_type: str,
    subject: str,
    level: str,
    namespace: str | None,
    repository: str | None,
) -> None:
    _require_target_admin(conn, principal, namespace, repository)
    _require_subject(conn, subject_type, subject)
    accounts.grant(conn, subject_type, subject, level, namespace, repository)


async def give(
    request: web.Request,
    who: Caller,
    subject_type: str,
    subject: str,
    level: str,
    namespace: str | None,
    repository: str | None,
) -> accounts.Grant:
    """Give or replace a grant (granting again on the same target sets the new level)."""
    subject_type, subject = _check_subject(subject_type, subject)
    if level not in LEVELS:
        raise bad_request(f"field 'level' must be one of {', '.join(LEVELS)}", {"field": "level"})
    _check_target(namespace, repository)
    await db_of(request).run(_grant, who.principal, subject_type, subject, level, namespace, repository)
    detail = audit_log.granted(level, subject_type, subject, namespace, repository)
    record(request, who, detail, namespace if namespace is not None else repository)
    return accounts.Grant(subject_type, subject, namespace, repository, LEVELS[level])


async def create_grant(request: web.Request) -> web.Response:
    who = await caller(request)
    data = await body.json_object(request, {"subject_type", "subject", "level", "namespace", "repository"})
    subject_type, subject = body.choice(data, "subject_type", SUBJECT_TYPES), body.text(data, "subject")
    level = body.choice(data, "level", tuple(LEVELS))
    namespace, repository = body.optional_text(data, "namespace"), body.optional_text(data, "repository")
    grant = await give(request, who, subject_type, subject, level, namespace, repository)
    return web.json_response(grant_json(grant))


def _revoke(
    conn: sa.Connection,
    principal: Principal,
    subject_type: str,
    subject: str,
    namespace: str | None,
    repository: str | None,
) -> None:
    _require_target_admin(conn, principal, namespace, repository)
    _require_subject(conn, subject_type, subject)
    held = accounts.list_grants(conn, subject_type, subject)
    if not any(g.namespace == namespace and g.repository == repository for g in held):
        raise not_found(f"{subject_type} {subject!r} has no grant on {namespace or repository!r}")
    accounts.revoke(conn, subject_type, subject, namespace, repository)


async def take(
    request: web.Request,
    who: Caller,
    subject_type: str | None,
    subject: str | None,
    namespace: str | None,
    repository: str | None,
) -> None:
    subject_type, subject = _check_subject(subject_type, subject)
    _check_target(namespace, repository)
    await db_of(request).run(_revoke, who.principal, subject_type, subject, namespace, repository)
    detail = audit_log.revoked(subject_type, subject, namespace, repository)
    record(request, who, detail, namespace if namespace is not None else repository)


async def delete_grant(request: web.Request) -> web.Response:
    who = await caller(request)
    subject_type, subject = body.query(request, "subject_type"), body.query(request, "subject")
    namespace, repository = body.query(request, "namespace"), body.query(request, "repository")
    await take(request, who, subject_type, subject, namespace, repository)
    return no_content()


# -- visibility --------------------------------------------------------------------------------


def _set_visibility(conn: sa.Connection, principal: Principal, name: str, public: bool) -> None:
    _require_target_admin(conn, principal, None, name)
    if not administration.repository_exists(conn, name):
        raise not_found(f"no repository named {name!r}")
    accounts.set_visibility(conn, name, public)


async def set_visibility(request: web.Request) -> web.Response:
    """Public: anyone may pull, anonymous callers included. Private: grants only."""
    who = await caller(request)
    name = body.path(request, "name")
    _check_target(None, name)
    visibility = body.choice(await body.json_object(request, {"visibility"}), "visibility", ("public", "private"))
    await db_of(request).run(_set_visibility, who.principal, name, visibility == "public")
    record(request, who, f"make repository {name} {visibility}", name)
    return web.json_response({"name": name, "visibility": visibility})


ROUTES = [
    ("GET", "/grants", list_grants),
    ("POST", "/grants", create_grant),
    ("DELETE", "/grants", delete_grant),
    ("PUT", "/repositories/{name:.+}/visibility", set_visibility),
]
