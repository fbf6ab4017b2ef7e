"""Extension points inside the registry's write transactions.

Tag immutability, storage quotas and webhooks all need to act *in* the transaction that stores a
blob or changes a tag: a check made before it races with concurrent pushes, and an event queued
after it is lost if the process dies in between. The registry calls these hooks with the open
connection; a hook refuses a change by raising ``RegistryError``, which rolls everything back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa


@dataclass(frozen=True, slots=True)
class Change:
    """A repository change, as webhooks describe it."""

    action: str  # 'push' | 'delete' | 'pull'
    repository: str
    digest: str
    tags: tuple[str, ...] = ()
    media_type: str | None = None
    size: int | None = None
    actor: str = ""
    at: float = 0.0
    extra: dict = field(default_factory=dict)


class Hooks(Protocol):
    def before_blob(self, conn: sa.Connection, repository: str, digest: str, size: int) -> None:
        """A verified blob is about to become visible in ``repository`` (quota)."""

    def before_manifest(
        self, conn: sa.Connection, repository: str, digest: str, size: int, tags: Sequence[str]
    ) -> None:
        """A manifest is about to be stored and ``tags`` pointed at it (immutability, quota)."""

    def after_manifest(self, conn: sa.Connection, repository: str, digest: str, size: int, tags: Sequence[str]) -> None:
        """The manifest is stored and tagged, still inside the transaction (quota: usage after)."""

    def before_untag(self, conn: sa.Connection, repository: str, tags: Sequence[str]) -> None:
        """``tags`` are about to be removed or, for a manifest delete, unlinked (immutability)."""

    def changed(self, conn: sa.Connection, change: Change) -> None:
        """A change was made in this transaction (webhook queue)."""

    def observed(self, change: Change) -> None:
        """A read on the event loop, outside any transaction: 'pull' (a manifest GET), 'serve'
        (blob bytes sent, in ``size``), 'upload' (blob bytes received). Must only queue in memory:
        it is on the pull path."""


class NoHooks:
    def before_blob(self, conn: sa.Connection, repository: str, digest: str, size: int) -> None:
        pass

    def before_manifest(
        self, conn: sa.Connection, repository: str, digest: str, size: int, tags: Sequence[str]
    ) -> None:
        pass

    def after_manifest(self, conn: sa.Connection, repository: str, digest: str, size: int, tags: Sequence[str]) -> None:
        pass

    def before_untag(self, conn: sa.Connection, repository: str, tags: Sequence[str]) -> None:
        pass

    def changed(self, conn: sa.Connection, change: Change) -> None:
        pass

    def observed(self, change: Change) -> None:
        pass


class AllHooks(NoHooks):
    """Several hooks, called in order."""

    def __init__(self, hooks: Sequence[Hooks] = ()) -> None:
        self.hooks: list[Hooks] = list(hooks)

    def add(self, hook: Hooks) -> None:
        self.hooks.append(hook)

    def before_blob(self, conn: sa.Connection, repository: str, digest: str, size: int) -> None:
        for hook in self.hooks:
            hook.before_blob(conn, repository, digest, size)

    def before_manifest(
        self, conn: sa.Connection, repository: str, digest: str, size: int, tags: Sequence[str]
    ) -> None:
        for hook in self.hooks:
            hook.before_manifest(conn, repository, digest, size, tags)

    def after_manifest(self, conn: sa.Connection, repository: str, digest: str, size: int, tags: Sequence[str]) -> None:
        for hook in self.hooks:
            hook.after_manifest(conn, repository, digest, size, tags)

    def before_untag(self, conn: sa.Connection, repository: str, tags: Sequence[str]) -> None:
        for hook in self.hooks:
            hook.before_untag(conn, repository, tags)

    def changed(self, conn: sa.Connection, change: Change) -> None:
        for hook in self.hooks:
            hook.changed(conn, change)

    def observed(self, change: Change) -> None:
        for hook in self.hooks:
            hook.observed(change)
