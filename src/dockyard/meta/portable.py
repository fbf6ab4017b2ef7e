"""SQL expressions that SQLite and PostgreSQL spell differently, compiled per dialect.

Reports group by namespace and read figures out of JSON run summaries. Doing that in SQL keeps
them set-based (one query, whatever the number of rows), but neither the first path component of
a name nor a number inside a JSON text has a spelling both databases accept: SQLite has ``instr``
and ``json_extract``, PostgreSQL has ``position`` and ``->>``. These elements render the right
one for the connection's dialect; the default is standard SQL plus PostgreSQL's JSON operators.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class namespace_of(FunctionElement):  # noqa: N801 - used like a SQL function
    """The first path component of a repository name (the whole name if it has no slash), like
    ``dockyard.auth.access.namespace_of``."""

    type = sa.String()
    inherit_cache = True
    name = "namespace_of"


@compiles(namespace_of)
def _namespace_standard(element: namespace_of, compiler: SQLCompiler, **kw: Any) -> str:
    (name,) = list(element.clauses)
    x = compiler.process(name, **kw)
    return f"(CASE WHEN POSITION('/' IN {x}) > 0 THEN SUBSTRING({x} FROM 1 FOR POSITION('/' IN {x}) - 1) ELSE {x} END)"


@compiles(namespace_of, "sqlite")
def _namespace_sqlite(element: namespace_of, compiler: SQLCompiler, **kw: Any) -> str:
    (name,) = list(element.clauses)
    x = compiler.process(name, **kw)
    return f"(CASE WHEN instr({x}, '/') > 0 THEN substr({x}, 1, instr({x}, '/') - 1) ELSE {x} END)"


class json_integer(FunctionElement):  # noqa: N801 - used like a SQL function
    """A top-level integer field of a JSON object stored as text; NULL when it is absent.
    ``key`` is a literal of our own code (never user input): it is inlined in the SQL."""

    type = sa.BigInteger()
    inherit_cache = False  # ``key`` is not part of SQLAlchemy's cache key: never reuse a compilation
    name = "json_integer"

    def __init__(self, column: sa.ColumnElement[Any], key: str) -> None:
        if not key.replace("_", "").isalnum():
            raise ValueError(f"unsupported JSON key {key!r}")
        self.key = key
        super().__init__(column)


@compiles(json_integer)
def _json_integer_postgresql(element: json_integer, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"CAST(CAST({compiler.process(column, **kw)} AS JSON) ->> '{element.key}' AS BIGINT)"


@compiles(json_integer, "sqlite")
def _json_integer_sqlite(element: json_integer, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = list(element.clauses)
    return f"CAST(json_extract({compiler.process(column, **kw)}, '$.{element.key}') AS INTEGER)"
