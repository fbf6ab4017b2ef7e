"""Users, organizations, teams, grants and repository visibility: the write side of the
account model (robot accounts and access tokens are in ``credentials``; robots' grants are
here). Like ``meta.store``, every function takes a Connection inside a transaction.

Bad input (an unknown user, a name already taken, a malformed name) raises ``AccountError``
with a message fit to show an operator as is. The permission evaluation (``repository_level``
and friends) lives in ``auth.access`` and is re-exported here.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.auth import passwords
from dockyard.auth.access import can_create, namespace_of, readable_repositories, repository_level
from dockyard.auth.permissions import LEVEL_NAMES, LEVELS, Principal
from dockyard.meta.tables import grants, organizations, repositories, robots, team_members, teams, users
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name

__all__ = [
    "ADMIN_USER",
    "AccountError",
    "Grant",
    "User",
    "add_member",
    "add_user",
    "authenticate_password",
    "can_create",
    "create_org",
    "create_team",
    "ensure_admin",
    "grant",
    "list_grants",
    "list_orgs",
    "list_teams",
    "list_users",
    "namespace_of",
    "principal_by_id",
    "readable_repositories",
    "remove_member",
    "remove_user",
    "repository_level",
    "revoke",
    "robot_id",
    "split_robot_name",
    "set_disabled",
    "set_password",
    "set_visibility",
    "validate_account_name",
]

# Account names are repository path components, so that a user's or organization's name can
# be the first component of its repositories' names.
_NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
MAX_NAME_LENGTH = 64
ADMIN_USER = "admin"
SUBJECT_TYPES = ("user", "team", "robot")
# A robot's full name is ``org+name``: '+' is not allowed in account names, so it can never be
# mistaken for a user's, and docker accepts it as a login name.
ROBOT_SEPARATOR = "+"


class AccountError(ValueError):
    """Bad input to an account operation; the message is meant for the operator."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    is_admin: bool
    disabled: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class Grant:
    subject_type: str  # "user" | "team" | "robot"
    subject: str  # a user name, "org/team", or "org+robot"
    namespace: str | None
    repository: str | None
    level: int

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES.get(self.level, str(self.level))

    @property
    def target(self) -> str:
        return f"{self.namespace}/*" if self.namespace is not None else str(self.repository)


def validate_account_name(name: str, what: str = "user") -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        raise AccountError(
            f"invalid {what} name {name!r}: use lowercase letters and digits, separated by '.', '_', '__' or"
            f" dashes, at most {MAX_NAME_LENGTH} characters"
        )
    return name


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise AccountError("the password must not be empty")
    return password


def _check_namespace_free(conn: sa.Connection, name: str) -> None:
    """User and organization names share the namespace of repository names."""
    if conn.execute(sa.select(users.c.id).where(users.c.name == name)).first():
        raise AccountError(f"the name {name!r} is taken by a user")
    if conn.execute(sa.select(organizations.c.id).where(organizations.c.name == name)).first():
        raise AccountError(f"the name {name!r} is taken by an organization")


# -- users ---------------------------------------------------------------------------------


def _user_id(conn: sa.Connection, name: str) -> int:
    user_id = conn.execute(sa.select(users.c.id).where(users.c.name == name)).scalar()
    if user_id is None:
        raise AccountError(f"no user named {name!r}")
    return user_id


def add_user(conn: sa.Connection, name: str, password: str, is_admin: bool = False) -> int:
    validate_account_name(name, "user")
    _check_password(password)
    _check_namespace_free(conn, name)
    result = conn.execute(
        sa.insert(users).values(
            name=name,
            password_hash=passwords.hash_password(password),
            is_admin=is_admin,
            created_at=time.time(),
            disabled=False,
        )
    )
    return result.inserted_primary_key[0]


def list_users(conn: sa.Connection) -> list[User]:
    q = sa.select(users.c.id, users.c.name, users.c.is_admin, users.c.disabled, users.c.created_at)
    return [User(*row) for row in conn.execute(q.order_by(users.c.name))]


def set_password(conn: sa.Connection, name: str, password: str) -> None:
    _check_password(password)
    user_id = _user_id(conn, name)
    conn.execute(sa.update(users).where(users.c.id == user_id).values(password_hash=passwords.hash_password(password)))


def set_disabled(conn: sa.Connection, name: str, disabled: bool) -> None:
    """A disabled user keeps their grants and memberships but can neither log in nor use a
    token issued before (``repository_level`` reads the flag on every check)."""
    user_id = _user_id(conn, name)
    conn.execute(sa.update(users).where(users.c.id == user_id).values(disabled=disabled))


def remove_user(conn: sa.Connection, name: str) -> None:
    """Remove the user with their team memberships and grants. Their repositories stay: the
    next user created under the same name would own them again."""
    user_id = _user_id(conn, name)
    conn.execute(sa.delete(team_members).where(team_members.c.user_id == user_id))
    conn.execute(sa.delete(grants).where(grants.c.subject_type == "user", grants.c.subject_id == user_id))
    conn.execute(sa.delete(users).where(users.c.id == user_id))


def authenticate_password(conn: sa.Connection, name: str, password: str) -> Principal | None:
    """The user's principal if ``password`` is theirs and they are enabled, else None.

    Run it in a read-write transaction (``Database.run``): a hash made with older argon2
    parameters is replaced on a successful login.
    """
    row = conn.execute(
        sa.select(users.c.id, users.c.name, users.c.password_hash, users.c.is_admin, users.c.disabled).where(
            users.c.name == name
        )
    ).first()
    if row is None:
        passwords.waste_time(password)
        return None
    # Verify before looking at ``disabled`` so that a disabled account costs the same time.
    if not passwords.verify(row.password_hash, password) or row.disabled:
        return None
    if passwords.needs_rehash(row.password_hash):
        new_hash = passwords.hash_password(password)
        conn.execute(sa.update(users).where(users.c.id == row.id).values(password_hash=new_hash))
    return Principal("user", row.id, row.name, bool(row.is_admin))


def principal_by_id(conn: sa.Connection, kind: str, principal_id: int | None) -> Principal | None:
    """The account behind a token as it is now (for a refresh): None when it was removed or
    disabled since, or for any other kind (anonymous)."""
    if principal_id is None:
        return None
    if kind == "robot":
        q = (
            sa.select(organizations.c.name, robots.c.name)
            .select_from(robots.join(organizations))
            .where(robots.c.id == principal_id)
        )
        found = conn.execute(q).first()
        return Principal("robot", principal_id, f"{found[0]}{ROBOT_SEPARATOR}{found[1]}") if found else None
    if kind != "user":
        return None
    row = conn.execute(
        sa.select(users.c.id, users.c.name, users.c.is_admin).where(
            users.c.id == principal_id, users.c.disabled.is_(False)
        )
    ).first()
    return Principal("user", row.id, row.name, bool(row.is_admin)) if row else None


def ensure_admin(conn: sa.Connection, password: str | None) -> str | None:
    """At first start, create the site admin ``admin``.

    ``password`` comes from DOCKYARD_ADMIN_PASSWORD; without one (None or empty) a random
    password is generated and returned so the caller can print it, once. Returns None when the
    admin already exists or the password was given.
    """
    if conn.execute(sa.select(users.c.id).where(users.c.name == ADMIN_USER)).first():
        return None
    generated = None if password else passwords.generate_password()
    add_user(conn, ADMIN_USER, password or generated, is_admin=True)
    return generated


# -- organizations and teams ---------------------------------------------------------------


def create_org(conn: sa.Connection, name: str) -> int:
    validate_account_name(name, "organization")
    _check_namespace_free(conn, name)
    return conn.execute(sa.insert(organizations).values(name=name, created_at=time.time())).inserted_primary_key[0]


def list_orgs(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.select(organizations.c.name).order_by(organizations.c.name)).scalars())


def _org_id(conn: sa.Connection, name: str) -> int:
    org_id = conn.execute(sa.select(organizations.c.id).where(organizations.c.name == name)).scalar()
    if org_id is None:
        raise AccountError(f"no organization named {name!r}")
    return org_id


def _team_id(conn: sa.Connection, org: str, team: str) -> int:
    org_id = _org_id(conn, org)
    q = sa.select(teams.c.id).where(teams.c.organization_id == org_id, teams.c.name == team)
    team_id = conn.execute(q).scalar()
    if team_id is None:
        raise AccountError(f"no team {team!r} in organization {org!r}")
    return team_id


def split_robot_name(fullname: str) -> tuple[str, str]:
    """``org+name`` -> (org, name); AccountError when it is not shaped like a robot's name."""
    org, sep, name = fullname.partition(ROBOT_SEPARATOR) if isinstance(fullname, str) else ("", "", "")
    if not sep or not org or not name:
        raise AccountError(f"a robot is named as organization{ROBOT_SEPARATOR}name, not {fullname!r}")
    return org, name


def robot_id(conn: sa.Connection, fullname: str) -> int:
    org, name = split_robot_name(fullname)
    org_id = _org_id(conn, org)
    found = conn.execute(
        sa.select(robots.c.id).where(robots.c.organization_id == org_id, robots.c.name == name)
    ).scalar()
    if found is None:
        raise AccountError(f"no robot {name!r} in organization {org!r}")
    return found


def create_team(conn: sa.Connection, org: str, team: str) -> int:
    validate_account_name(team, "team")
    org_id = _org_id(conn, org)
    if conn.execute(sa.select(teams.c.id).where(teams.c.organization_id == org_id, teams.c.name == team)).first():
        raise AccountError(f"organization {org!r} already has a team {team!r}")
    return conn.execute(sa.insert(teams).values(organization_id=org_id, name=team)).inserted_primary_key[0]


def list_teams(conn: sa.Connection, org: str) -> dict[str, list[str]]:
    """Each team of ``org`` with its members' names, sorted."""
    org_id = _org_id(conn, org)
    q = (
        sa.select(teams.c.name, users.c.name)
        .select_from(teams.outerjoin(team_members).outerjoin(users))
        .where(teams.c.organization_id == org_id)
        .order_by(teams.c.name, users.c.name)
    )
    result: dict[str, list[str]] = {}
    for team, member in conn.execute(q):
        members = result.setdefault(team, [])
        if member is not None:
            members.append(member)
    return result


def add_member(conn: sa.Connection, org: str, team: str, user: str) -> None:
    """Add ``user`` to ``org/team``; adding a member twice is not an error."""
    team_id, user_id = _team_id(conn, org, team), _user_id(conn, user)
    member = sa.and_(team_members.c.team_id == team_id, team_members.c.user_id == user_id)
    if conn.execute(sa.select(team_members.c.team_id).where(member)).first() is None:
        conn.execute(sa.insert(team_members).values(team_id=team_id, user_id=user_id))


def remove_member(conn: sa.Connection, org: str, team: str, user: str) -> None:
    team_id, user_id = _team_id(conn, org, team), _user_id(conn, user)
    result = conn.execute(
        sa.delete(team_members).where(team_members.c.team_id == team_id, team_members.c.user_id == user_id)
    )
    if result.rowcount == 0:
        raise AccountError(f"{user!r} is not a member of {org}/{team}")


# -- grants --------------------------------------------------------------------------------


def _subject_id(conn: sa.Connection, subject_type: str, subject_name: str) -> int:
    if subject_type == "user":
        return _user_id(conn, subject_name)
    if subject_type == "team":
        org, sep, team = subject_name.partition("/")
        if not sep:
            raise AccountError(f"a team is named as organization/team, not {subject_name!r}")
        return _team_id(conn, org, team)
    if subject_type == "robot":
        return robot_id(conn, subject_name)
    raise AccountError(f"a grant is given to a 'user', a 'team' or a 'robot', not {subject_type!r}")


def _target(namespace: str | None, repository: str | None) -> sa.ColumnElement[bool]:
    """The WHERE clause for exactly one of a namespace or a repository, both validated."""
    if (namespace is None) == (repository is None):
        raise AccountError("give exactly one of a namespace or a repository")
    if namespace is not None:
        if not _NAME_RE.fullmatch(namespace) or len(namespace) > 255:
            raise AccountError(f"invalid namespace {namespace!r}")
        return sa.and_(grants.c.namespace == namespace, grants.c.repository.is_(None))
    try:
        validate_name(repository)
    except RegistryError:
        raise AccountError(f"invalid repository name {repository!r}") from None
    return sa.and_(grants.c.repository == repository, grants.c.namespace.is_(None))


def grant(
    conn: sa.Connection,
    subject_type: str,
    subject_name: str,
    level_name: str,
    namespace: str | None = None,
    repository: str | None = None,
) -> None:
    """Give a user, a team (``"org/team"``) or a robot (``"org+robot"``) a level on one
    repository or a whole namespace.

    Granting again replaces the previous level (so a grant can be lowered as well as raised).
    The repository or namespace need not exist yet: access can be set up before the first push.
    A robot can only be given access inside its own organization: it is the organization's
    credential, and whoever manages the organization should not be able to reach beyond it.
    """
    level = LEVELS.get(level_name.lower() if isinstance(level_name, str) else level_name)
    if level is None:
        raise AccountError(f"unknown level {level_name!r}: use one of {', '.join(LEVELS)}")
    where = _target(namespace, repository)
    subject_id = _subject_id(conn, subject_type, subject_name)
    if subject_type == "robot":
        org = split_robot_name(subject_name)[0]
        if namespace_of(namespace if namespace is not None else str(repository)) != org:
            raise AccountError(f"robot {subject_name!r} can only be given access inside organization {org!r}")
    mine = sa.and_(grants.c.subject_type == subject_type, grants.c.subject_id == subject_id, where)
    if conn.execute(sa.update(grants).where(mine).values(level=level)).rowcount == 0:
        conn.execute(
            sa.insert(grants).values(
                subject_type=subject_type,
                subject_id=subject_id,
                namespace=namespace,
                repository=repository,
                level=level,
            )
        )


def revoke(
    conn: sa.Connection,
    subject_type: str,
    subject_name: str,
    namespace: str | None = None,
    repository: str | None = None,
) -> None:
    where = _target(namespace, repository)
    subject_id = _subject_id(conn, subject_type, subject_name)
    result = conn.execute(
        sa.delete(grants).where(grants.c.subject_type == subject_type, grants.c.subject_id == subject_id, where)
    )
    if result.rowcount == 0:
        raise AccountError(f"{subject_type} {subject_name!r} has no grant on {namespace or repository!r}")


def list_grants(conn: sa.Connection, subject_type: str, subject_name: str) -> list[Grant]:
    """The grants given directly to one user or team (not those a user has through teams)."""
    subject_id = _subject_id(conn, subject_type, subject_name)
    q = (
        sa.select(grants.c.namespace, grants.c.repository, grants.c.level)
        .where(grants.c.subject_type == subject_type, grants.c.subject_id == subject_id)
        .order_by(grants.c.namespace, grants.c.repository)
    )
    return [Grant(subject_type, subject_name, *row) for row in conn.execute(q)]


# -- repositories --------------------------------------------------------------------------


def set_visibility(conn: sa.Connection, repository: str, public: bool) -> None:
    """Make an existing repository public (anyone may pull) or private (grants only)."""
    result = conn.execute(
        sa.update(repositories)
        .where(repositories.c.name == repository)
        .values(visibility="public" if public else "private")
    )
    if result.rowcount == 0:
        raise AccountError(f"no repository named {repository!r}")
