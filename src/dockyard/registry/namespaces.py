"""Which repositories make up a namespace: the first path component of a repository's name.

Quotas and namespace-wide policies both ask "every repository of ``acme``", which is ``acme``
itself and everything under ``acme/``, the same rule ``auth.administration`` applies.
"""

from __future__ import annotations

import sqlalchemy as sa

from dockyard.meta.tables import repositories


def namespace_of(repository: str) -> str:
    return repository.split("/", 1)[0]


def in_namespace(column: sa.ColumnElement, namespace: str) -> sa.ColumnElement[bool]:
    """``column`` names a repository of ``namespace``: the namespace itself or ``namespace/...``.
    A range rather than LIKE: no wildcard to escape, no case folding (SQLite's LIKE ignores case),
    and an index on the name serves it ('0' is the character after '/')."""
    return sa.or_(column == namespace, sa.and_(column > namespace + "/", column < namespace + "0"))


def repositories_of(conn: sa.Connection, namespace: str) -> list[tuple[int, str]]:
    """(id, name) of the namespace's repositories, by name."""
    q = sa.select(repositories.c.id, repositories.c.name).where(in_namespace(repositories.c.name, namespace))
    return [(row.id, row.name) for row in conn.execute(q.order_by(repositories.c.name))]
