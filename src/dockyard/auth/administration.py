"""Who administers what, and the look-ups the admin API needs beyond ``accounts``.

The registry asks one question per request (``access.repository_level``); the admin API asks
others: may this user manage organization X, which grants may they see, which teams are they in.
Those live here so that the registry's hot path stays as it is.

Administering follows the permission levels: a user administers a namespace when they are a site
admin, when it is their own user namespace, or when they (or one of their teams) hold ADMIN on it;
they administer one repository also through an ADMIN grant on just that repository. An
organization's admins are the admins of its namespace. Robots administer nothing: they are an
organization's credential for pushing and pulling, not a person who manages it.

Like ``accounts``, every function takes a Connection inside a transaction. The user row is read
here rather than trusted from the principal, so losing site admin or being disabled counts at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.auth.accounts import ROBOT_SEPARATOR, Grant, User
from dockyard.auth.permissions import ADMIN, Principal
from dockyard.meta.tables import grants, organizations, repositories, robots, team_members, teams, users


@dataclass(frozen=True, slots=True)
class Administered:
    """The namespaces and single repositories a principal administers (``everything``: a site admin)."""

    everything: bool
    namespaces: frozenset[str]
    repositories: frozenset[str]

    def namespace(self, namespace: str) -> bool:
        return self.everything or namespace in self.namespaces

    def repository(self, repository: str) -> bool:
        return self.everything or repository in self.repositories or repository.split("/", 1)[0] in self.namespaces

    def target(self, namespace: str | None, repository: str | None) -> bool:
        """A grant's target: a whole namespace, or one repository."""
        return self.namespace(namespace) if namespace is not None else self.repository(str(repository))


NOTHING = Administered(False, frozenset(), frozenset())


def _teams_of(user_id: int) -> sa.Select:
    return sa.select(team_members.c.team_id).where(team_members.c.user_id == user_id)


def administered(conn: sa.Connection, principal: Principal) -> Administered:
    """What ``principal`` administers, in two queries whatever the number of grants."""
    if principal.kind != "user" or principal.id is None:
        return NOTHING
    row = conn.execute(
        sa.select(users.c.name, users.c.is_admin).where(users.c.id == principal.id, users.c.disabled.is_(False))
    ).first()
    if row is None:
        return NOTHING
    if row.is_admin:
        return Administered(True, frozenset(), frozenset())
    mine = sa.or_(
        sa.and_(grants.c.subject_type == "user", grants.c.subject_id == principal.id),
        sa.and_(grants.c.subject_type == "team", grants.c.subject_id.in_(_teams_of(principal.id))),
    )
    namespaces, single = {row.name}, set()
    for namespace, repository in conn.execute(
        sa.select(grants.c.namespace, grants.c.repository).where(mine, grants.c.level >= ADMIN)
    ):
        if namespace is not None:
            namespaces.add(namespace)
        else:
            single.add(repository)
    return Administered(False, frozenset(namespaces), frozenset(single))


# -- existence -----------------------------------------------------------------------------


def user_exists(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.select(users.c.id).where(users.c.name == name)).first() is not None


def org_exists(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.select(organizations.c.id).where(organizations.c.name == name)).first() is not None


def team_exists(conn: sa.Connection, org: str, team: str) -> bool:
    q = (
        sa.select(teams.c.id)
        .select_from(teams.join(organizations))
        .where(organizations.c.name == org, teams.c.name == team)
    )
    return conn.execute(q).first() is not None


def robot_exists(conn: sa.Connection, org: str, name: str) -> bool:
    q = (
        sa.select(robots.c.id)
        .select_from(robots.join(organizations))
        .where(organizations.c.name == org, robots.c.name == name)
    )
    return conn.execute(q).first() is not None


def repository_exists(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.select(repositories.c.id).where(repositories.c.name == name)).first() is not None


def subject_exists(conn: sa.Connection, subject_type: str, subject: str) -> bool:
    """Whether a grant's subject exists; a malformed name (no '/' for a team, no '+' for a robot)
    counts as missing too, the caller having validated the shape first if it cares."""
    if subject_type == "user":
        return user_exists(conn, subject)
    if subject_type == "team":
        org, sep, team = subject.partition("/")
        return bool(sep) and team_exists(conn, org, team)
    if subject_type == "robot":
        org, sep, name = subject.partition(ROBOT_SEPARATOR)
        return bool(sep) and robot_exists(conn, org, name)
    return False


# -- listings ------------------------------------------------------------------------------


def teams_of(conn: sa.Connection, user_id: int) -> list[str]:
    """The teams a user belongs to, as ``org/team``, sorted."""
    q = (
        sa.select(organizations.c.name, teams.c.name)
        .select_from(team_members.join(teams).join(organizations))
        .where(team_members.c.user_id == user_id)
        .order_by(organizations.c.name, teams.c.name)
    )
    return [f"{org}/{team}" for org, team in conn.execute(q)]


def organizations_of(conn: sa.Connection, principal: Principal) -> list[tuple[str, bool]]:
    """The organizations ``principal`` can see, each with whether they administer it: all of them
    for a site admin, else those they administer or belong to through a team. Robots see none."""
    scope = administered(conn, principal)
    if scope.everything:
        q = sa.select(organizations.c.name).order_by(organizations.c.name)
        return [(name, True) for name in conn.execute(q).scalars()]
    if principal.id is None or principal.kind != "user":
        return []
    member = sa.select(teams.c.organization_id).where(teams.c.id.in_(_teams_of(principal.id)))
    q = sa.select(organizations.c.name).where(
        sa.or_(organizations.c.id.in_(member), organizations.c.name.in_(sorted(scope.namespaces)))
    )
    return [(name, scope.namespace(name)) for name in sorted(conn.execute(q).scalars())]


def grants_on(conn: sa.Connection, namespace: str | None = None, repository: str | None = None) -> list[Grant]:
    """Every grant on one repository, or on a namespace and the repositories in it, with the
    subjects' names (a user, ``org/team`` or ``org+robot``)."""
    if namespace is not None:
        where = sa.or_(
            grants.c.namespace == namespace, grants.c.repository.startswith(f"{namespace}/", autoescape=True)
        )
    else:
        where = grants.c.repository == repository
    rows = conn.execute(
        sa.select(grants.c.subject_type, grants.c.subject_id, grants.c.namespace, grants.c.repository, grants.c.level)
        .where(where)
        .order_by(grants.c.namespace, grants.c.repository, grants.c.subject_type, grants.c.subject_id)
    ).all()
    names = _subject_names(conn, {(r.subject_type, r.subject_id) for r in rows})
    return [
        Grant(r.subject_type, names[(r.subject_type, r.subject_id)], r.namespace, r.repository, r.level)
        for r in rows
        if (r.subject_type, r.subject_id) in names
    ]


def _subject_names(conn: sa.Connection, subjects: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Names of grant subjects, one query per subject type."""
    wanted = {kind: [i for k, i in subjects if k == kind] for kind in ("user", "team", "robot")}
    names: dict[tuple[str, int], str] = {}
    if wanted["user"]:
        for uid, name in conn.execute(sa.select(users.c.id, users.c.name).where(users.c.id.in_(wanted["user"]))):
            names[("user", uid)] = name
    # Teams and robots are both named within their organization: one query shape for both.
    for kind, table, separator in (("team", teams, "/"), ("robot", robots, ROBOT_SEPARATOR)):
        if not wanted[kind]:
            continue
        q = (
            sa.select(table.c.id, organizations.c.name, table.c.name)
            .select_from(table.join(organizations))
            .where(table.c.id.in_(wanted[kind]))
        )
        for row_id, org, name in conn.execute(q):
            names[(kind, row_id)] = f"{org}{separator}{name}"
    return names


def user_named(conn: sa.Connection, name: str) -> User | None:
    q = sa.select(users.c.id, users.c.name, users.c.is_admin, users.c.disabled, users.c.created_at)
    row = conn.execute(q.where(users.c.name == name)).first()
    return User(*row) if row else None
