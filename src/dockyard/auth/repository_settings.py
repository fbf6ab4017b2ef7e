"""Changing a repository's description and visibility, for whoever administers it.

The rule is the admin API's (``api.admin.grants``) and the registry's ``*`` action: the
repository's administrators are site admins, the owner of its user namespace and whoever holds an
ADMIN grant on its namespace or on it alone (``administration.administered``). The check and the
change run in one transaction, so losing the right a moment before is never missed.
"""

from __future__ import annotations

import sqlalchemy as sa

from dockyard.auth import accounts, administration
from dockyard.auth.permissions import Principal
from dockyard.meta.tables import repositories

MAX_DESCRIPTION = 50_000  # characters: a README, not a data store


class NotAdministrator(Exception):
    """The principal does not administer the repository."""


class NoSuchRepository(Exception):
    pass


def _require_admin(conn: sa.Connection, principal: Principal, name: str) -> None:
    if not administration.administered(conn, principal).repository(name):
        raise NotAdministrator(f"only an administrator of {name!r} may change it")
    if not administration.repository_exists(conn, name):
        raise NoSuchRepository(name)


def normalize_description(text: str) -> str | None:
    """Line endings as browsers send them (CRLF) become LF; a blank description is none."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    return text or None


def set_description(conn: sa.Connection, principal: Principal, name: str, text: str) -> None:
    """Set the Markdown description (rendered without raw HTML by the web UI)."""
    description = normalize_description(text)
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise ValueError(f"a description is at most {MAX_DESCRIPTION} characters")
    _require_admin(conn, principal, name)
    conn.execute(sa.update(repositories).where(repositories.c.name == name).values(description=description))


def set_visibility(conn: sa.Connection, principal: Principal, name: str, public: bool) -> None:
    """Public: anyone may pull, anonymous callers included. Private: grants only."""
    _require_admin(conn, principal, name)
    accounts.set_visibility(conn, name, public)
