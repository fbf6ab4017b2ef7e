"""Schema-driven fuzzing of the admin API: schemathesis reads the OpenAPI document (the one the
server serves) and sends requests generated from it (valid ones and deliberately invalid ones), as the
site admin, to a real ``dockyard serve --auth token``.

Every answer must be a non-5xx status the document lists for the operation, in JSON, matching the
documented schema. The fuzzer creates and removes what it likes on its own server; two guards in
the API keep it from locking itself out (the admin cannot remove their own account, and changing
one's own password needs the current one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.oci import assert_no_traceback
from tests.server import RegistryServer

ADMIN_PASSWORD = "fuzz-admin-123"
TOKEN_REUSE = 120.0  # access tokens live 300 s; a run takes about a minute


class FuzzTarget:
    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self._token = ("", 0.0)

    def headers(self) -> dict[str, str]:
        token, fetched = self._token
        if time.monotonic() - fetched > TOKEN_REUSE:
            r = httpx.get(f"{self.server.url}/token", params={"service": "dockyard"}, auth=("admin", ADMIN_PASSWORD))
            assert r.status_code == 200, r.text
            token = r.json()["token"]
            self._token = (token, time.monotonic())
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_AUTH", "token")
        mp.setenv("DOCKYARD_ADMIN_PASSWORD", ADMIN_PASSWORD)
        server = RegistryServer(tmp_path_factory.mktemp("admin-fuzz") / "data").start()
    fuzz = FuzzTarget(server)
    assert httpx.get(f"{server.url}/api/v1/openapi.json").json() == json.loads(DOCUMENT.read_text())
    # Something to find: an organization with a team, so generated names sometimes hit.
    headers = fuzz.headers()
    httpx.post(f"{server.url}/api/v1/orgs", json={"name": "acme"}, headers=headers).raise_for_status()
    httpx.post(f"{server.url}/api/v1/orgs/acme/teams", json={"name": "devs"}, headers=headers).raise_for_status()
    yield fuzz
    server.stop()
    assert_no_traceback(server.log())


# Loaded from the repository's file rather than from the server (schemathesis's fixture-based
# loading does not run on pytest 9); the fixture checks that the server serves this very document.
DOCUMENT = Path(__file__).parents[1] / "src/dockyard/api/openapi.json"
schema = schemathesis.openapi.from_path(DOCUMENT)


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,  # the same examples on every run: CI must not pass or fail by luck
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_generated_requests_get_documented_answers(case: schemathesis.Case, target: FuzzTarget):
    case.call_and_validate(
        base_url=target.server.url,
        headers=target.headers(),
        timeout=60,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
            ignored_auth,
            allow_header_conformance,
        ],
    )
