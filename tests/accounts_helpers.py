"""Shared helpers for the tests of the account and credential model."""

from __future__ import annotations

from dockyard.auth import accounts
from dockyard.auth.permissions import Principal
from dockyard.meta.db import Database


def add_user(db: Database, name: str, password: str = "pw", is_admin: bool = False) -> Principal:
    return Principal("user", db.run_sync(accounts.add_user, name, password, is_admin), name, is_admin)


def level(db: Database, principal: Principal, repository: str) -> int:
    return db.run_sync(accounts.repository_level, principal, repository)
