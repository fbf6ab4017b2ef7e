"""Effective permission of a principal on repositories: the read side of the account model.

``repository_level`` runs on every authorized request whose token carries no cached decision,
so it is one round trip: the caller's user row, the best matching grant and the repository's
visibility come back from a single SELECT of scalar subqueries, each an indexed lookup.

The user row is read from the database rather than trusted from the principal, so disabling a
user or taking site admin away takes effect at their next request, not at token expiry.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from dockyard.auth.permissions import ADMIN, NONE, READ, WRITE, Principal
from dockyard.meta.tables import grants, organizations, repositories, robots, team_members, users

# SQLite's default limit on bound parameters is 32766 since 3.32 (999 before); stay well below.
_CHUNK = 500


def namespace_of(repository: str) -> str:
    """The first path component: a user's or an organization's name (or, for a one-component
    name such as ``ubuntu``, the name itself)."""
    return repository.split("/", 1)[0]


def _subject_filter(user_id: int) -> sa.ColumnElement[bool]:
    """Grants that apply to the user: their own, and those of every team they belong to."""
    teams_of_user = sa.select(team_members.c.team_id).where(team_members.c.user_id == user_id)
    return sa.or_(
        sa.and_(grants.c.subject_type == "user", grants.c.subject_id == user_id),
        sa.and_(grants.c.subject_type == "team", grants.c.subject_id.in_(teams_of_user)),
    )


def _is_public(conn: sa.Connection, repository: str) -> bool:
    q = sa.select(repositories.c.visibility).where(repositories.c.name == repository)
    return conn.execute(q).scalar() == "public"


def repository_level(conn: sa.Connection, principal: Principal, repository: str) -> int:
    """The level ``principal`` has on ``repository``, whether or not the repository exists yet.

    Site admin: ADMIN. Owner of the user namespace the repository is in: ADMIN. Otherwise the
    highest of the user's and their teams' grants on the repository or its namespace, and at
    least READ on a public repository. Robots: see ``_robot_level``. Anonymous callers, and
    removed or disabled users or robots, get only the public READ.

    What a personal access token's scope allows on top of this is capped by the caller
    (``AuthService.grant``): the level belongs to the account, the cap to the credential.
    """
    if principal.kind == "robot" and principal.id is not None:
        return _robot_level(conn, principal.id, repository)
    if principal.kind != "user" or principal.id is None:
        return READ if _is_public(conn, repository) else NONE
    namespace = namespace_of(repository)
    granted = (
        sa.select(sa.func.max(grants.c.level))
        .where(
            _subject_filter(principal.id),
            sa.or_(grants.c.repository == repository, grants.c.namespace == namespace),
        )
        .scalar_subquery()
    )
    visibility = sa.select(repositories.c.visibility).where(repositories.c.name == repository).scalar_subquery()
    row = conn.execute(
        sa.select(users.c.name, users.c.is_admin, users.c.disabled, granted, visibility).where(
            users.c.id == principal.id
        )
    ).first()
    if row is None or row.disabled:
        return READ if _is_public(conn, repository) else NONE
    name, is_admin, _disabled, level, vis = row
    if is_admin or name == namespace:
        return ADMIN
    level = level or NONE
    return max(level, READ) if vis == "public" else level


def _robot_level(conn: sa.Connection, robot_id: int, repository: str) -> int:
    """A robot's level: the highest of its own grants on the repository or its namespace, counted
    only inside its organization (``accounts.grant`` refuses others, this is the second lock),
    and at least READ on a public repository. One round trip, as for users."""
    namespace = namespace_of(repository)
    granted = (
        sa.select(sa.func.max(grants.c.level))
        .where(
            grants.c.subject_type == "robot",
            grants.c.subject_id == robot_id,
            sa.or_(grants.c.repository == repository, grants.c.namespace == namespace),
        )
        .scalar_subquery()
    )
    visibility = sa.select(repositories.c.visibility).where(repositories.c.name == repository).scalar_subquery()
    row = conn.execute(
        sa.select(organizations.c.name, granted, visibility)
        .select_from(robots.join(organizations))
        .where(robots.c.id == robot_id)
    ).first()
    if row is None:  # removed
        return READ if _is_public(conn, repository) else NONE
    org, level, vis = row
    level = (level or NONE) if org == namespace else NONE
    return max(level, READ) if vis == "public" else level


def can_create(conn: sa.Connection, principal: Principal, repository: str) -> bool:
    """May ``principal`` push to ``repository`` (and so create it, private, if it is new)?"""
    return repository_level(conn, principal, repository) >= WRITE


def readable_repositories(conn: sa.Connection, principal: Principal, names: list[str]) -> list[str]:
    """The members of ``names`` that ``principal`` may pull, in their original order.

    A fixed number of queries whatever the length of ``names``: the user row, all the user's
    read-or-better grants (few, per user), and the public ones among ``names`` in chunks.
    """
    if not names:
        return []
    readable: set[str] = set()
    if principal.kind == "robot" and principal.id is not None:
        readable = _robot_readable(conn, principal.id, names)
    elif principal.kind == "user" and principal.id is not None:
        row = conn.execute(
            sa.select(users.c.name, users.c.is_admin).where(users.c.id == principal.id, users.c.disabled.is_(False))
        ).first()
        if row is not None:
            if row.is_admin:
                return list(names)
            q = sa.select(grants.c.namespace, grants.c.repository).where(
                _subject_filter(principal.id), grants.c.level >= READ
            )
            spaces, repos = {row.name}, set()
            for namespace, repository in conn.execute(q):
                if namespace is not None:
                    spaces.add(namespace)
                else:
                    repos.add(repository)
            readable = {n for n in names if n in repos or namespace_of(n) in spaces}
    readable |= _public_among(conn, (n for n in names if n not in readable))
    return [n for n in names if n in readable]


def _robot_readable(conn: sa.Connection, robot_id: int, names: list[str]) -> set[str]:
    """The members of ``names`` a robot's own grants let it read (inside its organization)."""
    q = (
        sa.select(organizations.c.name, grants.c.namespace, grants.c.repository)
        .select_from(robots.join(organizations))
        .join(grants, sa.and_(grants.c.subject_type == "robot", grants.c.subject_id == robots.c.id))
        .where(robots.c.id == robot_id, grants.c.level >= READ)
    )
    spaces: set[str] = set()
    repos: set[str] = set()
    for org, namespace, repository in conn.execute(q):
        if namespace_of(namespace if namespace is not None else repository) != org:
            continue
        if namespace is not None:
            spaces.add(namespace)
        else:
            repos.add(repository)
    return {n for n in names if n in repos or namespace_of(n) in spaces}


def _public_among(conn: sa.Connection, names: Iterable[str]) -> set[str]:
    pending = list(dict.fromkeys(names))
    public: set[str] = set()
    for start in range(0, len(pending), _CHUNK):
        chunk = pending[start : start + _CHUNK]
        q = sa.select(repositories.c.name).where(repositories.c.name.in_(chunk), repositories.c.visibility == "public")
        public.update(conn.execute(q).scalars())
    return public
