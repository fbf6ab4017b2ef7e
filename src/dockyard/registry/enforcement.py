"""Tag immutability and storage quotas, enforced inside the registry's write transactions.

``PolicyHooks`` is added to the registry's hooks (``api.app``). It refuses, with DENIED (403):

* a manifest PUT that would move a tag matching an immutability pattern of the repository (its
  own or its namespace's) to a different manifest; pushing the same manifest again is fine;
* deleting such a tag, or a manifest one points at (the registry passes those tags to
  ``before_untag``), including by retention, which skips them;
* a blob (upload or mount) or a manifest new to a namespace with a quota, when its size on top of
  the namespace's usage would pass the limit. The upload code deletes the refused copy and the
  session, so nothing of a refused blob is left behind.

Pushes vastly outnumber rule changes, so the rules (which targets have immutability patterns,
which namespaces have a quota) are cached in memory and read again every ``REFRESH_EVERY``
seconds, or at once after ``invalidate`` (called by this process's API after a change). With no
rule for the repository a hook costs a dictionary look-up. A change made by another process
(the CLI) counts within ``REFRESH_EVERY``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import sqlalchemy as sa

from dockyard.meta import store
from dockyard.meta.tables import policies, quotas
from dockyard.registry import quotas as quota_queries
from dockyard.registry.errors import RegistryError
from dockyard.registry.hooks import NoHooks
from dockyard.registry.namespaces import namespace_of
from dockyard.registry.units import format_size

REFRESH_EVERY = 2.0
_changes = 0  # bumped by invalidate(): every PolicyHooks of this process reloads at its next use


def invalidate() -> None:
    """Rules or quotas changed in this process: reload them before the next check."""
    global _changes
    _changes += 1


@dataclass(frozen=True, slots=True)
class _Rules:
    immutable: dict[str, tuple[str, ...]] = field(default_factory=dict)  # namespace or repository -> patterns
    quota_namespaces: frozenset[str] = frozenset()

    def patterns(self, repository: str) -> tuple[str, ...]:
        """The namespace's patterns, then the repository's own (they add up)."""
        return self.immutable.get(namespace_of(repository) + "/", ()) + self.immutable.get(repository, ())


def _load(conn: sa.Connection) -> _Rules:
    immutable: dict[str, tuple[str, ...]] = {}
    q = sa.select(policies.c.namespace, policies.c.repository, policies.c.rules).where(
        policies.c.kind == "immutability"
    )
    for row in conn.execute(q):
        try:
            patterns = tuple(str(p) for p in json.loads(row.rules).get("patterns", ()))
        except (ValueError, AttributeError):  # written by hand into the table: ignore rather than block pushes
            continue
        # A trailing slash keeps a namespace's key apart from a one-component repository's.
        key = row.namespace + "/" if row.namespace is not None else row.repository
        immutable[key] = immutable.get(key, ()) + patterns
    namespaces = frozenset(conn.execute(sa.select(quotas.c.namespace)).scalars())
    return _Rules(immutable, namespaces)


def immutable_rule(patterns: Sequence[str], tag: str) -> str | None:
    return next((p for p in patterns if fnmatchcase(tag, p)), None)


def _immutable(tag: str, repository: str, rule: str, what: str) -> RegistryError:
    return RegistryError(
        "DENIED",
        f"tag {tag!r} is immutable in repository {repository!r} (rule {rule!r}): {what}",
        {"repository": repository, "tag": tag, "rule": rule},
        status=403,
    )


_USAGE_BEFORE = "dockyard.quota_usage_before"  # conn.info key, from before_manifest to after_manifest


class PolicyHooks(NoHooks):
    def __init__(self, refresh_every: float = REFRESH_EVERY) -> None:
        self.refresh_every = refresh_every
        self._rules: _Rules | None = None
        self._loaded_at = 0.0
        self._seen = -1

    def _current(self, conn: sa.Connection) -> _Rules:
        """The cached rules, reloaded through ``conn`` (the caller's transaction) when stale. Safe
        on several writer threads: a reload replaces the whole snapshot in one assignment."""
        rules, now, changes = self._rules, time.monotonic(), _changes
        if rules is None or self._seen != changes or now - self._loaded_at > self.refresh_every:
            rules = _load(conn)
            self._rules, self._loaded_at, self._seen = rules, now, changes
        return rules

    # -- hooks ------------------------------------------------------------------------------

    def before_blob(self, conn: sa.Connection, repository: str, digest: str, size: int) -> None:
        namespace = namespace_of(repository)
        if namespace in self._current(conn).quota_namespaces:
            # Linking adds to usage only a blob that is new here and that no manifest anywhere
            # references yet; one referenced elsewhere counts once a manifest here references it.
            if not quota_queries.blob_in_namespace(conn, namespace, digest) and not quota_queries.referenced(
                conn, digest
            ):
                used = quota_queries.namespace_usage(conn, namespace)
                self._check_quota(conn, namespace, used, used + size)

    def before_manifest(
        self, conn: sa.Connection, repository: str, digest: str, size: int, tags: Sequence[str]
    ) -> None:
        conn.info.pop(_USAGE_BEFORE, None)  # left by a transaction that failed in between
        rules = self._current(conn)
        patterns = rules.patterns(repository)
        if patterns:
            for tag in tags:
                rule = immutable_rule(patterns, tag)
                if rule is None:
                    continue
                current = store.tag_digest(conn, repository, tag)
                if current is not None and current != digest:
                    raise _immutable(tag, repository, rule, f"it already points at {current} and cannot be moved")
        namespace = namespace_of(repository)
        if namespace in rules.quota_namespaces and not quota_queries.manifest_in_namespace(conn, namespace, digest):
            # The manifest and the blobs it makes count here (held elsewhere until now) are only
            # known once it is stored: compare usage before and after (``after_manifest``).
            conn.info[_USAGE_BEFORE] = (namespace, digest, quota_queries.namespace_usage(conn, namespace))

    def after_manifest(self, conn: sa.Connection, repository: str, digest: str, size: int, tags: Sequence[str]) -> None:
        before = conn.info.pop(_USAGE_BEFORE, None)
        if before is None or before[:2] != (namespace_of(repository), digest):
            return
        namespace, _, used = before
        self._check_quota(conn, namespace, used, quota_queries.namespace_usage(conn, namespace))

    def before_untag(self, conn: sa.Connection, repository: str, tags: Sequence[str]) -> None:
        patterns = self._current(conn).patterns(repository)
        if not patterns:
            return
        for tag in tags:
            rule = immutable_rule(patterns, tag)
            if rule is not None:
                raise _immutable(tag, repository, rule, "it cannot be deleted")

    # -- quotas -----------------------------------------------------------------------------

    def _check_quota(self, conn: sa.Connection, namespace: str, used: int, after: int) -> None:
        """Refuse a change that takes the namespace from ``used`` to ``after`` bytes, over its limit."""
        limit = quota_queries.lock_quota(conn, namespace)
        if limit is None or after <= used:  # removed since the rules were cached, or no growth
            return
        size = after - used
        if after > limit:
            raise RegistryError(
                "DENIED",
                f"storage quota of namespace {namespace!r} exceeded: {format_size(used)} used + "
                f"{format_size(size)} > {format_size(limit)} quota",
                {"namespace": namespace, "used_bytes": used, "size": size, "limit_bytes": limit},
                status=403,
            )
