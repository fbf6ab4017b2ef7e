from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server import RegistryServer


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
