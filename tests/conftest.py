from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher

from dockyard.auth import passwords
from dockyard.meta.db import Database
from tests import backends
from tests.server import RegistryServer


@pytest.fixture(scope="session", autouse=True)
def backend_services() -> Iterator[None]:
    """Whatever the backend under test started on first use (tests/backends.py) ends with the session."""
    yield
    backends.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """One registry for the session; tests use distinct repository names to stay independent."""
    server = RegistryServer(tmp_path_factory.mktemp("registry") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def fresh_registry(tmp_path) -> Iterator[RegistryServer]:
    """A registry of the test's own, for tests that kill, restart or inspect its data folder."""
    server = RegistryServer(tmp_path / "data").start()
    yield server
    server.stop()


@pytest.fixture
def client(registry: RegistryServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as c:
        yield c


# Cheap argon2 parameters for tests of the account model: the defaults cost ~0.3 s a hash.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def fast_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", FAST_HASHER)
    monkeypatch.setattr(passwords, "_dummy_hash", None)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated metadata database of the test's own, on the backend under test."""
    database = Database(backends.database_url(tmp_path))
    database.migrate()
    yield database
    database.close()
