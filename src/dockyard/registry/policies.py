"""Retention and immutability policies: the rules, their validation, and where they are stored.

A policy has one target: a whole namespace (``acme``: every repository ``acme`` or ``acme/...``)
or one repository (``acme/app``). It is kept in ``policies`` as JSON checked here, so the API, the
command line and the registry's hooks all read the same normalised rules.

Retention (``RetentionRules``; applied by ``dockyard.registry.retention``):

* Tags. ``keep_last`` (the newest N by ``tags.updated_at``, i.e. by when they were last pushed),
  ``keep_tags`` (glob patterns, fnmatch-style and anchored: ``release-*`` keeps ``release-1`` but
  not ``old-release-1``) and ``keep_pulled_within`` (seconds: the tag's manifest was pulled in
  that window) are the tag rules. A tag is kept if ANY of the rules given keeps it, and deleted
  otherwise. With no tag rule at all, tags are left alone. A tag that was never pulled is not
  kept by ``keep_pulled_within``: combine it with ``keep_last`` so a fresh push survives.
* Untagged manifests. With ``untagged_older_than`` (seconds), a manifest that no tag of the
  repository points at (counting the tags retention deletes in the same run), that is not a child
  of a surviving index and not a referrer (``subject``) of a surviving manifest, and that was
  linked to the repository longer ago than that (and, with ``keep_pulled_within``, not pulled
  within it) is unlinked from the repository. Its bytes stay until garbage collection.
* A repository's own policy replaces its namespace's policy for that repository (no merging).

Immutability (``ImmutabilityRules``; enforced by ``dockyard.registry.enforcement``): tags matching
any pattern cannot be moved to another manifest or deleted, by a push, a DELETE or retention.
Unlike retention, the namespace's patterns and the repository's add up: a repository's
administrators cannot loosen what the namespace's administrators locked.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import sqlalchemy as sa

from dockyard.meta.tables import policies
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name
from dockyard.registry.namespaces import in_namespace, namespace_of
from dockyard.registry.quotas import namespace_usage, quota_of  # noqa: F401 - the usage report imports them here
from dockyard.registry.units import MAX_SECONDS, format_duration

KINDS = ("retention", "immutability")
MAX_PATTERNS = 100
MAX_PATTERN_LENGTH = 128
MAX_KEEP_LAST = 1_000_000
# Tag characters plus the glob's own: '*', '?', '[', ']' and '!' (negation inside brackets).
_PATTERN_RE = re.compile(r"[a-zA-Z0-9._\-*?\[\]!]+")


class PolicyError(ValueError):
    """Input a policy cannot hold; ``field`` names the offending field for the API's 400."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class RetentionRules:
    keep_last: int | None = None
    keep_tags: tuple[str, ...] = ()
    untagged_older_than: int | None = None
    keep_pulled_within: int | None = None

    @property
    def touches_tags(self) -> bool:
        """Whether any tag rule is set: without one, retention leaves tags alone."""
        return self.keep_last is not None or bool(self.keep_tags) or self.keep_pulled_within is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "keep_last": self.keep_last,
            "keep_tags": list(self.keep_tags),
            "untagged_older_than": self.untagged_older_than,
            "keep_pulled_within": self.keep_pulled_within,
        }

    def describe(self) -> str:
        parts = []
        if self.keep_last is not None:
            parts.append(f"keep the newest {self.keep_last}")
        if self.keep_tags:
            parts.append("keep " + ", ".join(self.keep_tags))
        if self.keep_pulled_within is not None:
            parts.append(f"keep what was pulled within {format_duration(self.keep_pulled_within)}")
        if self.untagged_older_than is not None:
            parts.append(f"unlink untagged manifests older than {format_duration(self.untagged_older_than)}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class ImmutabilityRules:
    patterns: tuple[str, ...]

    def match(self, tag: str) -> str | None:
        """The first pattern that makes ``tag`` immutable, or None."""
        return next((p for p in self.patterns if fnmatchcase(tag, p)), None)

    def as_json(self) -> dict[str, Any]:
        return {"patterns": list(self.patterns)}

    def describe(self) -> str:
        return "immutable: " + ", ".join(self.patterns)


Rules = RetentionRules | ImmutabilityRules


@dataclass(frozen=True, slots=True)
class Policy:
    kind: str
    namespace: str | None
    repository: str | None
    rules: Rules
    created_at: float
    updated_at: float

    @property
    def target(self) -> str:
        """``acme/*`` for a namespace, ``acme/app`` for a repository: how the CLI prints targets."""
        return f"{self.namespace}/*" if self.namespace is not None else str(self.repository)


# -- validation ----------------------------------------------------------------------------


def check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise PolicyError(f"the kind of policy must be one of {', '.join(KINDS)}", "kind")
    return kind


def check_target(namespace: str | None, repository: str | None) -> tuple[str | None, str | None]:
    """Exactly one of a namespace (one path component) or a repository, each a valid name."""
    if (namespace is None) == (repository is None):
        raise PolicyError("give exactly one of 'namespace' or 'repository'")
    field = "namespace" if namespace is not None else "repository"
    name = str(namespace if namespace is not None else repository)
    try:
        validate_name(name)
    except RegistryError:
        raise PolicyError(f"invalid {field} name {name!r}", field) from None
    if namespace is not None and "/" in namespace:
        raise PolicyError(f"a namespace is one path component, not {namespace!r}", field)
    return namespace, repository


def _integer(data: dict[str, Any], key: str, minimum: int, maximum: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise PolicyError(f"{key!r} must be an integer from {minimum} to {maximum}", key)
    return value


def _patterns(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        raise PolicyError(f"{key!r} must be a list of at most {MAX_PATTERNS} patterns", key)
    for pattern in value:
        if not isinstance(pattern, str) or not 1 <= len(pattern) <= MAX_PATTERN_LENGTH:
            raise PolicyError(f"each pattern in {key!r} must be a string of 1 to {MAX_PATTERN_LENGTH} characters", key)
        if not _PATTERN_RE.fullmatch(pattern):
            raise PolicyError(
                f"pattern {pattern!r} in {key!r} may hold only tag characters (letters, digits, '.', '_', '-') "
                "and the glob's '*', '?', '[', ']', '!'",
                key,
            )
    return tuple(dict.fromkeys(value))  # without duplicates, in the order given


_RETENTION_FIELDS = ("keep_last", "keep_tags", "untagged_older_than", "keep_pulled_within")


def parse_rules(kind: str, data: Any) -> Rules:
    """The rules of a ``kind`` policy from JSON-like ``data``, checked; PolicyError otherwise."""
    check_kind(kind)
    if not isinstance(data, dict):
        raise PolicyError("the rules must be a JSON object")
    fields = _RETENTION_FIELDS if kind == "retention" else ("patterns",)
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown:
        raise PolicyError(f"unknown field(s) for a {kind} policy: {', '.join(unknown)}", unknown[0])
    if kind == "immutability":
        patterns = _patterns(data, "patterns")
        if not patterns:
            raise PolicyError("an immutability policy needs at least one pattern in 'patterns'", "patterns")
        return ImmutabilityRules(patterns)
    rules = RetentionRules(
        keep_last=_integer(data, "keep_last", 1, MAX_KEEP_LAST),
        keep_tags=_patterns(data, "keep_tags"),
        untagged_older_than=_integer(data, "untagged_older_than", 0, MAX_SECONDS),
        keep_pulled_within=_integer(data, "keep_pulled_within", 1, MAX_SECONDS),
    )
    if not rules.touches_tags and rules.untagged_older_than is None:
        raise PolicyError(
            "a retention policy needs at least one of keep_last, keep_tags, keep_pulled_within, untagged_older_than"
        )
    return rules


# -- storage -------------------------------------------------------------------------------


def _policy(row: sa.Row) -> Policy:
    rules = parse_rules(row.kind, json.loads(row.rules))
    return Policy(row.kind, row.namespace, row.repository, rules, row.created_at, row.updated_at)


def _where(kind: str, namespace: str | None, repository: str | None) -> sa.ColumnElement[bool]:
    target = policies.c.namespace == namespace if namespace is not None else policies.c.repository == repository
    return sa.and_(policies.c.kind == kind, target)


def get_policy(conn: sa.Connection, kind: str, namespace: str | None, repository: str | None) -> Policy | None:
    row = conn.execute(sa.select(policies).where(_where(kind, namespace, repository)).limit(1)).first()
    return _policy(row) if row is not None else None


def set_policy(conn: sa.Connection, kind: str, namespace: str | None, repository: str | None, rules: Rules) -> Policy:
    """Create or replace the ``kind`` policy of a target.

    Select, then update or insert: the table's unique constraint cannot stop a second row with a
    NULL column, so the writer's serialisation (one SQLite writer) is what keeps one row a target.
    """
    check_kind(kind)
    check_target(namespace, repository)
    now = time.time()
    text = json.dumps(rules.as_json(), sort_keys=True)
    existing = conn.execute(sa.select(policies.c.created_at).where(_where(kind, namespace, repository))).first()
    if existing is not None:
        conn.execute(sa.update(policies).where(_where(kind, namespace, repository)).values(rules=text, updated_at=now))
        created = existing.created_at
    else:
        conn.execute(
            sa.insert(policies).values(
                kind=kind, namespace=namespace, repository=repository, rules=text, created_at=now, updated_at=now
            )
        )
        created = now
    return Policy(kind, namespace, repository, rules, created, now)


def delete_policy(conn: sa.Connection, kind: str, namespace: str | None, repository: str | None) -> bool:
    return conn.execute(sa.delete(policies).where(_where(kind, namespace, repository))).rowcount > 0


def list_policies(
    conn: sa.Connection, kind: str | None = None, namespace: str | None = None, repository: str | None = None
) -> list[Policy]:
    """Every policy, or those of one kind; ``namespace`` narrows to the namespace's policy and
    its repositories' policies, ``repository`` to the policies that apply to that repository."""
    q = sa.select(policies).order_by(policies.c.kind, policies.c.namespace, policies.c.repository)
    if kind is not None:
        q = q.where(policies.c.kind == kind)
    if namespace is not None:
        q = q.where(sa.or_(policies.c.namespace == namespace, in_namespace(policies.c.repository, namespace)))
    if repository is not None:
        q = q.where(sa.or_(policies.c.repository == repository, policies.c.namespace == namespace_of(repository)))
    return [_policy(row) for row in conn.execute(q)]


def effective_retention(conn: sa.Connection, repository: str) -> Policy | None:
    """The retention policy that governs ``repository``: its own, else its namespace's."""
    own = get_policy(conn, "retention", None, repository)
    return own if own is not None else get_policy(conn, "retention", namespace_of(repository), None)


def immutable_patterns(conn: sa.Connection, repository: str) -> ImmutabilityRules | None:
    """The namespace's and the repository's immutability patterns together, or None."""
    found = list_policies(conn, "immutability", repository=repository)
    patterns = tuple(dict.fromkeys(p for policy in found for p in policy.rules.patterns))  # type: ignore[union-attr]
    return ImmutabilityRules(patterns) if patterns else None
