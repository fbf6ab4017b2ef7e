"""Personal access tokens and robot accounts: the credentials other than a user's password.

A personal access token (PAT) is an extra password of one user for scripts and CI: it logs in as
the user, but its scope caps what it may do ('read', 'read-write', or 'admin' = everything the
user may do), it can expire, and it can be revoked alone. A robot is an organization's own
login, ``org+name``: it holds only its own grants, inside its organization.

Secrets are made here and shown once. A PAT reads ``dyp_<id>_<random>``, so login finds its
row by id instead of hashing against every token of the user; a robot's reads ``dyr_<random>``
and is found by the robot's name. The prefixes also let secret scanners recognise a leak.

Why SHA-256 and not argon2, as for passwords: a slow hash protects *low-entropy* secrets, which
an attacker holding the hash could otherwise guess. These secrets are 256 random bits we chose,
so even billions of SHA-256 guesses a second never find one, and a stolen hash is as useless as
with argon2. A fast hash keeps a token request at microseconds, where argon2 would spend ~0.3 s
and 64 MiB on the database writer thread for every ``docker login`` or token fetch of a CI job.
Hashes are compared in constant time all the same.

Each successful login through a credential yields a credential id, ``pat:<id>`` or
``robot:<id>``, embedded in the JWTs issued from it; ``credential_active`` is how the token
service and the registry notice that it was revoked, expired or removed since. Ids are never
reused (see ``meta.tables``), so an old token cannot come back to life through a new credential.
Functions take a Connection inside a transaction, like ``accounts``, and raise ``AccountError``
on bad input.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from dockyard.auth.accounts import (
    ROBOT_SEPARATOR,
    AccountError,
    _org_id,
    _user_id,
    robot_id,
    split_robot_name,
    validate_account_name,
)
from dockyard.auth.permissions import ADMIN, READ, WRITE, Principal
from dockyard.meta.tables import access_tokens, grants, organizations, robots, users

PAT_PREFIX = "dyp_"
ROBOT_PREFIX = "dyr_"
SCOPES = {"read": READ, "read-write": WRITE, "admin": ADMIN}
"""A PAT's scope -> the highest level it allows (the user's own level still applies below it)."""
_RANDOM_BYTES = 32
# Writing last_used_at on every login would make every token fetch of a busy CI a committed
# (fsynced) write; to the minute is what an operator looking for stale tokens needs.
LAST_USED_RESOLUTION = 60.0
_MAX_SECRET = 256
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A PAT as listed (never its secret, which is not stored)."""

    id: int
    name: str
    scope: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None

    def state(self, now: float | None = None) -> str:
        """'active', 'expired' or 'revoked'."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (time.time() if now is None else now):
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class Robot:
    id: int
    fullname: str  # org+name: the robot's login name
    created_at: float


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _matches(stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(stored_hash.encode(), _hash(secret).encode())


def is_robot_name(username: str) -> bool:
    """Robot names contain '+', which no user name may: such a login is never a password."""
    return ROBOT_SEPARATOR in username


def looks_like_secret(username: str, secret: str) -> bool:
    """Whether a login could be a PAT or a robot secret: worth the (cheap) secret check before the
    (slow) password one. A user's password that merely starts like a PAT still works: a failed
    secret check falls back to the password."""
    return is_robot_name(username) or secret.startswith(PAT_PREFIX)


# -- personal access tokens ----------------------------------------------------------------


def create_token(
    conn: sa.Connection, user: str, name: str, scope: str = "read", expires_in_days: int | None = None
) -> tuple[int, str]:
    """Create a PAT for ``user``; returns its id and its secret, which only exists here.

    The name is how the user tells tokens apart and revokes one; it is unique among the user's
    unrevoked tokens (an expired one keeps its name until revoked, so that ``token list`` is
    never ambiguous).
    """
    validate_account_name(name, "token")
    if scope not in SCOPES:
        raise AccountError(f"unknown token scope {scope!r}: use one of {', '.join(SCOPES)}")
    if expires_in_days is not None and (not isinstance(expires_in_days, int) or expires_in_days <= 0):
        raise AccountError("a token's lifetime is a positive number of days")
    user_id = _user_id(conn, user)
    taken = sa.select(access_tokens.c.id).where(
        access_tokens.c.user_id == user_id, access_tokens.c.name == name, access_tokens.c.revoked_at.is_(None)
    )
    if conn.execute(taken).first():
        raise AccountError(f"user {user!r} already has a token named {name!r} (revoke it first)")
    now = time.time()
    # The row goes in first, with a placeholder, because the id is part of the secret.
    token_id = conn.execute(
        sa.insert(access_tokens).values(
            user_id=user_id,
            name=name,
            secret_hash="",
            scope=scope,
            created_at=now,
            expires_at=now + expires_in_days * _DAY if expires_in_days else None,
        )
    ).inserted_primary_key[0]
    secret = f"{PAT_PREFIX}{token_id}_{secrets.token_urlsafe(_RANDOM_BYTES)}"
    conn.execute(sa.update(access_tokens).where(access_tokens.c.id == token_id).values(secret_hash=_hash(secret)))
    return token_id, secret


def list_tokens(conn: sa.Connection, user: str) -> list[AccessToken]:
    """All of the user's tokens, revoked and expired ones included, oldest first."""
    user_id = _user_id(conn, user)
    q = (
        sa.select(
            access_tokens.c.id,
            access_tokens.c.name,
            access_tokens.c.scope,
            access_tokens.c.created_at,
            access_tokens.c.expires_at,
            access_tokens.c.last_used_at,
            access_tokens.c.revoked_at,
        )
        .where(access_tokens.c.user_id == user_id)
        .order_by(access_tokens.c.id)
    )
    return [AccessToken(*row) for row in conn.execute(q)]


def revoke_token(conn: sa.Connection, user: str, name: str) -> None:
    """Revoke the user's token ``name``: logins with it fail at once, and access and refresh
    tokens issued from it fail at their next use (``credential_active``)."""
    user_id = _user_id(conn, user)
    result = conn.execute(
        sa.update(access_tokens)
        .where(access_tokens.c.user_id == user_id, access_tokens.c.name == name, access_tokens.c.revoked_at.is_(None))
        .values(revoked_at=time.time())
    )
    if result.rowcount == 0:
        raise AccountError(f"user {user!r} has no unrevoked token named {name!r}")


def _parse_pat(secret: str) -> int | None:
    prefix, _, rest = secret.partition(PAT_PREFIX)
    id_text, sep, random_part = rest.partition("_")
    if prefix or not sep or not random_part or not (id_text.isascii() and id_text.isdigit()) or len(id_text) > 18:
        return None
    return int(id_text)


def _authenticate_pat(conn: sa.Connection, username: str, secret: str) -> tuple[Principal, str] | None:
    token_id = _parse_pat(secret)
    if token_id is None:
        return None
    row = conn.execute(
        sa.select(
            access_tokens.c.secret_hash,
            access_tokens.c.expires_at,
            access_tokens.c.last_used_at,
            access_tokens.c.revoked_at,
            users.c.id,
            users.c.name,
            users.c.is_admin,
            users.c.disabled,
        )
        .select_from(access_tokens.join(users))
        .where(access_tokens.c.id == token_id)
    ).first()
    if row is None or row.name != username or not _matches(row.secret_hash, secret):
        return None
    now = time.time()
    if row.revoked_at is not None or row.disabled or (row.expires_at is not None and row.expires_at <= now):
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        conn.execute(sa.update(access_tokens).where(access_tokens.c.id == token_id).values(last_used_at=now))
    return Principal("user", row.id, row.name, bool(row.is_admin)), f"pat:{token_id}"


# -- robot accounts ------------------------------------------------------------------------


def create_robot(conn: sa.Connection, org: str, name: str) -> tuple[str, str]:
    """Create robot ``org+name``; returns its login name and its secret, which only exists here.
    It can do nothing until given grants (``accounts.grant(conn, "robot", "org+name", ...)``)."""
    validate_account_name(name, "robot")
    org_id = _org_id(conn, org)
    if conn.execute(sa.select(robots.c.id).where(robots.c.organization_id == org_id, robots.c.name == name)).first():
        raise AccountError(f"organization {org!r} already has a robot {name!r}")
    secret = f"{ROBOT_PREFIX}{secrets.token_urlsafe(_RANDOM_BYTES)}"
    conn.execute(
        sa.insert(robots).values(organization_id=org_id, name=name, secret_hash=_hash(secret), created_at=time.time())
    )
    return f"{org}{ROBOT_SEPARATOR}{name}", secret


def list_robots(conn: sa.Connection, org: str) -> list[Robot]:
    org_id = _org_id(conn, org)
    q = (
        sa.select(robots.c.id, robots.c.name, robots.c.created_at)
        .where(robots.c.organization_id == org_id)
        .order_by(robots.c.name)
    )
    return [Robot(rid, f"{org}{ROBOT_SEPARATOR}{name}", created) for rid, name, created in conn.execute(q)]


def remove_robot(conn: sa.Connection, org: str, name: str) -> None:
    """Remove robot ``org+name`` with its grants. Logins fail at once and tokens issued to it at
    their next use; a robot created later under the same name gets a new id and secret, so it
    inherits nothing."""
    rid = robot_id(conn, f"{org}{ROBOT_SEPARATOR}{name}")
    conn.execute(sa.delete(grants).where(grants.c.subject_type == "robot", grants.c.subject_id == rid))
    conn.execute(sa.delete(robots).where(robots.c.id == rid))


def _authenticate_robot(conn: sa.Connection, username: str, secret: str) -> tuple[Principal, str] | None:
    try:
        org, name = split_robot_name(username)
    except AccountError:
        return None
    row = conn.execute(
        sa.select(robots.c.id, robots.c.secret_hash)
        .select_from(robots.join(organizations))
        .where(organizations.c.name == org, robots.c.name == name)
    ).first()
    if row is None or not _matches(row.secret_hash, secret):
        return None
    return Principal("robot", row.id, f"{org}{ROBOT_SEPARATOR}{name}"), f"robot:{row.id}"


# -- logins and checks on use --------------------------------------------------------------


def authenticate_secret(conn: sa.Connection, username: str, secret: str) -> tuple[Principal, str] | None:
    """The principal and credential id for a PAT of user ``username`` or the secret of robot
    ``username`` (``org+name``); None when it matches nothing active.

    Run it in a read-write transaction (``Database.run``): a PAT login records ``last_used_at``.
    """
    if not isinstance(secret, str) or not secret or len(secret) > _MAX_SECRET:
        return None
    if is_robot_name(username):
        return _authenticate_robot(conn, username, secret)
    return _authenticate_pat(conn, username, secret)


def _parse_credential_id(credential_id: str) -> tuple[str, int] | None:
    kind, _, id_text = str(credential_id).partition(":")
    if not (id_text.isascii() and id_text.isdigit()) or len(id_text) > 18:
        return None
    return kind, int(id_text)


def credential_cap(conn: sa.Connection, credential_id: str) -> int | None:
    """The highest level the credential allows, or None when it is no longer usable: a PAT that
    was revoked, expired or whose user was disabled or removed; a removed robot; an id of an
    unknown form. A robot's cap is ADMIN: its grants already say all it may do."""
    parsed = _parse_credential_id(credential_id)
    if parsed is None:
        return None
    kind, ident = parsed
    if kind == "robot":
        return ADMIN if conn.execute(sa.select(robots.c.id).where(robots.c.id == ident)).first() else None
    if kind != "pat":
        return None
    row = conn.execute(
        sa.select(access_tokens.c.scope, access_tokens.c.expires_at, access_tokens.c.revoked_at, users.c.disabled)
        .select_from(access_tokens.join(users))
        .where(access_tokens.c.id == ident)
    ).first()
    if row is None or row.revoked_at is not None or row.disabled:
        return None
    if row.expires_at is not None and row.expires_at <= time.time():
        return None
    return SCOPES.get(row.scope)


def credential_active(conn: sa.Connection, credential_id: str) -> bool:
    """False once the credential a token was issued from was revoked, expired or removed."""
    return credential_cap(conn, credential_id) is not None
