"""The JSON admin API (``/api/v1``) against a real ``dockyard serve --auth token``.

Four callers recur: the site admin, ``olga`` (administrator of organization ``acme`` through its
``admins`` team, which holds ADMIN on the namespace), ``tom`` (a member of ``acme/devs``, no admin
rights) and ``pat`` (a plain user), plus anonymous. Each endpoint is driven through its happy path
and its permission rules, answers are checked against the OpenAPI document's schemas, and bad
input must be a 400 in the error shape, never a 500. The document itself is checked against the
routes the application really registers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from dockyard.api.app import create_app
from dockyard.config import Settings
from tests.oci import assert_error, assert_no_traceback, push_image, repo
from tests.server import RegistryServer

ADMIN_PASSWORD = "admin-secret-123"
PASSWORDS = {"admin": ADMIN_PASSWORD, "olga": "olga-pw-123", "tom": "tom-pw-123", "pat": "pat-pw-123"}
DOCUMENT = json.loads((Path(__file__).parents[1] / "src/dockyard/api/openapi.json").read_text())
_SCHEMAS = Registry().with_resource("urn:openapi", Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def conforms(body: Any, schema: str) -> Any:
    """``body`` is valid against ``#/components/schemas/<schema>`` of the OpenAPI document."""
    Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{schema}"}, registry=_SCHEMAS).validate(body)
    return body


class AdminApi:
    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.url = server.url
        self.tokens: dict[str, str] = {}

    def login(self, user: str, password: str) -> str:
        """A JWT from /token, as the web UI gets one: basic credentials, no scope needed."""
        r = httpx.get(f"{self.url}/token", params={"service": "dockyard"}, auth=(user, password))
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def call(self, who: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        """``who``: a name whose JWT is cached, None for anonymous; ``auth=`` overrides."""
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            if who not in self.tokens:
                self.tokens[who] = self.login(who, PASSWORDS[who])
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminApi]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_AUTH", "token")
        mp.setenv("DOCKYARD_ADMIN_PASSWORD", ADMIN_PASSWORD)
        server = RegistryServer(tmp_path_factory.mktemp("admin-api") / "data").start()
    admin = AdminApi(server)
    for name in ("olga", "tom", "pat"):
        user = {"name": name, "password": PASSWORDS[name]}
        assert admin.call("admin", "POST", "/users", json=user).status_code == 201
    assert admin.call("admin", "POST", "/orgs", json={"name": "acme"}).status_code == 201
    for team, member in (("admins", "olga"), ("devs", "tom")):
        assert admin.call("admin", "POST", "/orgs/acme/teams", json={"name": team}).status_code == 201
        assert admin.call("admin", "PUT", f"/orgs/acme/teams/{team}/members/{member}").status_code == 204
    grant = {"subject_type": "team", "subject": "acme/admins", "level": "admin", "namespace": "acme"}
    assert admin.call("admin", "POST", "/grants", json=grant).status_code == 200
    yield admin
    server.stop()
    assert_no_traceback(server.log())


def _operations() -> list[tuple[str, str]]:
    return [(m.upper(), p) for p, item in DOCUMENT["paths"].items() for m in item if m in METHODS]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path).removeprefix("/api/v1")


def _new_user(api: AdminApi, prefix: str = "u") -> str:
    name = repo(prefix)
    assert api.call("admin", "POST", "/users", json={"name": name, "password": "pw-123456"}).status_code == 201
    return name


# -- the document --------------------------------------------------------------------------------


def test_the_document_is_served_without_authentication(api: AdminApi):
    r = httpx.get(f"{api.url}/api/v1/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json() == DOCUMENT
    assert DOCUMENT["openapi"].startswith("3.1")
    assert set(DOCUMENT["components"]["securitySchemes"]) == {"bearer", "basic"}


def test_every_route_is_documented_and_every_documented_operation_routed(tmp_path: Path):
    app = create_app(Settings(data_dir=tmp_path / "data", auth="token", admin_password="x-123456"))
    try:
        routed = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.resource.canonical.startswith("/api/")
        }
    finally:
        app.freeze()
        asyncio.run(app.cleanup())
    assert routed == set(_operations())
    for method, path in _operations():
        operation = DOCUMENT["paths"][path][method.lower()]
        assert operation.get("operationId") and operation.get("responses"), (method, path)
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["$ref"].startswith("#/components/responses/"), (method, path, status)


def test_the_admin_api_is_absent_without_token_authentication(registry: RegistryServer):
    assert httpx.get(f"{registry.url}/api/v1/me").status_code == 404
    assert httpx.get(f"{registry.url}/api/v1/openapi.json").status_code == 404


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [op for op in _operations() if not op[1].endswith("openapi.json")])
def test_every_operation_needs_credentials(api: AdminApi, method: str, path: str):
    r = api.call(None, method, _concrete(path), json={})
    assert_error(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="{api.url}/token",service="dockyard"'


@pytest.mark.parametrize(
    "header",
    ["Bearer not-a-jwt", "Bearer", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Digest x", "x"],
)
def test_malformed_or_invalid_credentials_are_401(api: AdminApi, header: str):
    assert_error(api.call(None, "GET", "/me", headers={"Authorization": header}), 401, "UNAUTHORIZED")


def test_basic_credentials_work_and_wrong_ones_do_not(api: AdminApi):
    r = api.call(None, "GET", "/me", auth=("pat", PASSWORDS["pat"]))
    assert r.status_code == 200 and r.json()["name"] == "pat"
    assert_error(api.call(None, "GET", "/me", auth=("pat", "wrong")), 401, "UNAUTHORIZED")
    assert_error(api.call(None, "GET", "/me", auth=("nobody", "wrong")), 401, "UNAUTHORIZED")


def test_an_anonymous_token_is_not_a_login(api: AdminApi):
    token = httpx.get(f"{api.url}/token", params={"service": "dockyard"}).json()["token"]
    r = api.call(None, "GET", "/me", headers={"Authorization": f"Bearer {token}"})
    assert_error(r, 401, "UNAUTHORIZED")


def test_a_removed_users_token_stops_working_at_once(api: AdminApi):
    name = _new_user(api, "gone")
    token = api.login(name, "pw-123456")
    assert api.call(None, "GET", "/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api.call("admin", "DELETE", f"/users/{name}").status_code == 204
    assert_error(api.call(None, "GET", "/me", headers={"Authorization": f"Bearer {token}"}), 401, "UNAUTHORIZED")


# -- me ------------------------------------------------------------------------------------------


def test_me(api: AdminApi):
    me = conforms(api.call("admin", "GET", "/me").json(), "Me")
    assert me["name"] == "admin" and me["admin"] is True and me["kind"] == "user"
    assert me["credential"] == {"type": "password", "scope": None}
    assert {"name": "acme", "admin": True} in me["organizations"]
    olga = conforms(api.call("olga", "GET", "/me").json(), "Me")
    assert olga["admin"] is False and olga["teams"] == ["acme/admins"]
    assert olga["organizations"] == [{"name": "acme", "admin": True}]
    tom = api.call("tom", "GET", "/me").json()
    assert tom["teams"] == ["acme/devs"] and tom["organizations"] == [{"name": "acme", "admin": False}]
    pat = api.call("pat", "GET", "/me").json()
    assert pat["teams"] == [] and pat["organizations"] == []


# -- users ---------------------------------------------------------------------------------------


def test_site_admin_manages_users(api: AdminApi):
    name = repo("new")
    r = api.call("admin", "POST", "/users", json={"name": name, "password": "pw-123456", "admin": True})
    assert r.status_code == 201
    assert conforms(r.json(), "User") | {"created_at": None} == {
        "name": name, "admin": True, "disabled": False, "created_at": None
    }
    listed = conforms(api.call("admin", "GET", "/users").json(), "UserList")["users"]
    assert name in [u["name"] for u in listed] and {"olga", "tom", "pat"} <= {u["name"] for u in listed}
    assert_error(api.call("admin", "POST", "/users", json={"name": name, "password": "x"}), 400, "BAD_REQUEST")
    assert api.call("admin", "DELETE", f"/users/{name}").status_code == 204
    assert_error(api.call("admin", "DELETE", f"/users/{name}"), 404, "NOT_FOUND")
    assert name not in [u["name"] for u in api.call("admin", "GET", "/users").json()["users"]]


def test_a_user_name_may_not_be_an_organizations(api: AdminApi):
    assert_error(api.call("admin", "POST", "/users", json={"name": "acme", "password": "x"}), 400, "BAD_REQUEST")


def test_the_site_admin_cannot_remove_their_own_account(api: AdminApi):
    assert_error(api.call("admin", "DELETE", "/users/admin"), 400, "BAD_REQUEST")


def test_site_admin_disables_and_enables_a_user(api: AdminApi):
    name = _new_user(api, "off")
    token = api.login(name, "pw-123456")
    mine = {"Authorization": f"Bearer {token}"}
    assert api.call(None, "GET", "/me", headers=mine).status_code == 200
    r = api.call("admin", "PATCH", f"/users/{name}", json={"disabled": True})
    assert r.status_code == 200 and conforms(r.json(), "User")["disabled"] is True
    # The earlier token and the password both stop working at once.
    assert_error(api.call(None, "GET", "/me", headers=mine), 401, "UNAUTHORIZED")
    assert_error(api.call(None, "GET", "/me", auth=(name, "pw-123456")), 401, "UNAUTHORIZED")
    assert [u["disabled"] for u in api.call("admin", "GET", "/users").json()["users"] if u["name"] == name] == [True]
    r = api.call("admin", "PATCH", f"/users/{name}", json={"disabled": False})
    assert r.status_code == 200 and r.json()["disabled"] is False
    api.login(name, "pw-123456")
    for bad in ({}, {"disabled": "yes"}, {"disabled": True, "admin": True}):
        assert_error(api.call("admin", "PATCH", f"/users/{name}", json=bad), 400, "BAD_REQUEST")
    assert_error(api.call("admin", "PATCH", "/users/admin", json={"disabled": True}), 400, "BAD_REQUEST")
    assert_error(api.call("admin", "PATCH", f"/users/{repo('missing')}", json={"disabled": True}), 404, "NOT_FOUND")
    assert_error(api.call("olga", "PATCH", f"/users/{name}", json={"disabled": True}), 403, "DENIED")


@pytest.mark.parametrize("who", ["olga", "tom", "pat"])
def test_only_site_admins_manage_users(api: AdminApi, who: str):
    assert_error(api.call(who, "GET", "/users"), 403, "DENIED")
    assert_error(api.call(who, "POST", "/users", json={"name": repo("x"), "password": "x"}), 403, "DENIED")
    assert_error(api.call(who, "DELETE", "/users/pat"), 403, "DENIED")
    assert_error(api.call(who, "DELETE", f"/users/{repo('missing')}"), 403, "DENIED")
    assert_error(api.call(who, "POST", "/orgs", json={"name": repo("o")}), 403, "DENIED")


def test_users_change_their_own_password_with_the_current_one(api: AdminApi):
    name = _new_user(api, "pw")
    token = api.login(name, "pw-123456")
    me = {"Authorization": f"Bearer {token}"}
    path = f"/users/{name}/password"
    assert_error(api.call(None, "PUT", path, headers=me, json={"password": "new-pw-1"}), 400, "BAD_REQUEST")
    wrong = {"password": "new-pw-1", "current_password": "no"}
    assert_error(api.call(None, "PUT", path, headers=me, json=wrong), 403, "DENIED")
    right = {"password": "new-pw-1", "current_password": "pw-123456"}
    assert api.call(None, "PUT", path, headers=me, json=right).status_code == 204
    api.login(name, "new-pw-1")
    assert_error(api.call(None, "GET", "/me", auth=(name, "pw-123456")), 401, "UNAUTHORIZED")
    # Not someone else's, even as an organization admin.
    assert_error(api.call(None, "PUT", "/users/pat/password", headers=me, json={"password": "x"}), 403, "DENIED")
    assert_error(api.call("olga", "PUT", f"/users/{name}/password", json={"password": "x"}), 403, "DENIED")


def test_site_admin_resets_any_password(api: AdminApi):
    name = _new_user(api, "reset")
    assert api.call("admin", "PUT", f"/users/{name}/password", json={"password": "reset-pw-1"}).status_code == 204
    api.login(name, "reset-pw-1")
    r = api.call("admin", "PUT", f"/users/{repo('missing')}/password", json={"password": "x"})
    assert_error(r, 404, "NOT_FOUND")


# -- organizations, teams ------------------------------------------------------------------------


def test_organizations(api: AdminApi):
    name = repo("org")
    r = api.call("admin", "POST", "/orgs", json={"name": name})
    assert r.status_code == 201 and conforms(r.json(), "Organization") == {"name": name, "admin": True}
    assert_error(api.call("admin", "POST", "/orgs", json={"name": name}), 400, "BAD_REQUEST")
    assert_error(api.call("admin", "POST", "/orgs", json={"name": "pat"}), 400, "BAD_REQUEST")
    listed = conforms(api.call("admin", "GET", "/orgs").json(), "OrganizationList")["organizations"]
    assert {"name": name, "admin": True} in listed
    assert api.call("olga", "GET", "/orgs").json() == {"organizations": [{"name": "acme", "admin": True}]}
    assert api.call("tom", "GET", "/orgs").json() == {"organizations": [{"name": "acme", "admin": False}]}
    assert api.call("pat", "GET", "/orgs").json() == {"organizations": []}


def test_an_org_admin_manages_its_teams(api: AdminApi):
    team = repo("team")
    r = api.call("olga", "POST", "/orgs/acme/teams", json={"name": team})
    assert r.status_code == 201 and conforms(r.json(), "Team") == {"name": team, "members": []}
    assert_error(api.call("olga", "POST", "/orgs/acme/teams", json={"name": team}), 400, "BAD_REQUEST")
    assert api.call("olga", "PUT", f"/orgs/acme/teams/{team}/members/pat").status_code == 204
    assert api.call("olga", "PUT", f"/orgs/acme/teams/{team}/members/pat").status_code == 204  # idempotent
    teams = conforms(api.call("olga", "GET", "/orgs/acme/teams").json(), "TeamList")["teams"]
    assert {"name": team, "members": ["pat"]} in teams and {"name": "devs", "members": ["tom"]} in teams
    assert api.call("olga", "DELETE", f"/orgs/acme/teams/{team}/members/pat").status_code == 204
    assert_error(api.call("olga", "DELETE", f"/orgs/acme/teams/{team}/members/pat"), 404, "NOT_FOUND")
    assert_error(api.call("olga", "PUT", f"/orgs/acme/teams/{team}/members/{repo('nobody')}"), 404, "NOT_FOUND")
    assert_error(api.call("olga", "PUT", "/orgs/acme/teams/missing/members/pat"), 404, "NOT_FOUND")
    assert_error(api.call("olga", "POST", "/orgs/acme/teams", json={"name": "Bad Name"}), 400, "BAD_REQUEST")


@pytest.mark.parametrize("who", ["tom", "pat"])
def test_others_do_not_manage_an_organizations_teams(api: AdminApi, who: str):
    for method, path in (
        ("GET", "/orgs/acme/teams"),
        ("POST", "/orgs/acme/teams"),
        ("PUT", "/orgs/acme/teams/devs/members/pat"),
        ("DELETE", "/orgs/acme/teams/devs/members/tom"),
        ("GET", "/orgs/acme/robots"),
        ("POST", "/orgs/acme/robots"),
        ("DELETE", "/orgs/acme/robots/x"),
    ):
        assert_error(api.call(who, method, path, json={"name": "x"}), 403, "DENIED")


def test_a_missing_organization_is_403_to_strangers_and_404_to_site_admins(api: AdminApi):
    missing = repo("missing")
    for path in (f"/orgs/{missing}/teams", f"/orgs/{missing}/robots"):
        assert_error(api.call("olga", "GET", path), 403, "DENIED")
        assert_error(api.call("admin", "GET", path), 404, "NOT_FOUND")
    assert_error(api.call("admin", "POST", f"/orgs/{missing}/teams", json={"name": "t"}), 404, "NOT_FOUND")


def test_the_site_admin_manages_every_organization(api: AdminApi):
    org = repo("org")
    api.call("admin", "POST", "/orgs", json={"name": org})
    assert api.call("admin", "POST", f"/orgs/{org}/teams", json={"name": "t"}).status_code == 201
    assert_error(api.call("olga", "GET", f"/orgs/{org}/teams"), 403, "DENIED")


# -- grants --------------------------------------------------------------------------------------


def _pull_push(api: AdminApi, user: str, name: str) -> list[str]:
    r = httpx.get(
        f"{api.url}/token",
        params={"service": "dockyard", "scope": f"repository:{name}:pull,push"},
        auth=(user, PASSWORDS[user]),
    )
    granted = jwt.decode(r.json()["token"], options={"verify_signature": False})["access"]
    return sorted(action for grant in granted for action in grant["actions"])


def test_an_org_admin_grants_in_the_organization(api: AdminApi):
    target = f"acme/{repo('app')}"
    grant = {"subject_type": "user", "subject": "pat", "level": "write", "repository": target}
    r = api.call("olga", "POST", "/grants", json=grant)
    assert r.status_code == 200
    assert conforms(r.json(), "Grant") == {**grant, "namespace": None}
    assert _pull_push(api, "pat", target) == ["pull", "push"]
    on_repo = conforms(api.call("olga", "GET", "/grants", params={"repository": target}).json(), "GrantList")
    assert on_repo["grants"] == [{**grant, "namespace": None}]
    on_org = api.call("olga", "GET", "/grants", params={"namespace": "acme"}).json()["grants"]
    assert {**grant, "namespace": None} in on_org
    assert {"subject_type": "team", "subject": "acme/admins", "namespace": "acme", "repository": None,
            "level": "admin"} in on_org
    # Granting again replaces the level.
    assert api.call("olga", "POST", "/grants", json={**grant, "level": "read"}).json()["level"] == "read"
    assert _pull_push(api, "pat", target) == ["pull"]
    params = {"subject_type": "user", "subject": "pat", "repository": target}
    assert api.call("olga", "DELETE", "/grants", params=params).status_code == 204
    assert_error(api.call("olga", "DELETE", "/grants", params=params), 404, "NOT_FOUND")
    assert _pull_push(api, "pat", target) == []


def test_grants_to_teams_and_a_namespace(api: AdminApi):
    grant = {"subject_type": "team", "subject": "acme/devs", "level": "delete", "namespace": "acme"}
    assert api.call("olga", "POST", "/grants", json=grant).status_code == 200
    assert _pull_push(api, "tom", f"acme/{repo('any')}") == ["pull", "push"]
    listed = api.call("olga", "GET", "/grants", params={"subject_type": "team", "subject": "acme/devs"}).json()
    assert listed == {"grants": [{**grant, "repository": None}]}
    params = {"subject_type": "team", "subject": "acme/devs", "namespace": "acme"}
    assert api.call("olga", "DELETE", "/grants", params=params).status_code == 204


def test_nobody_grants_outside_what_they_administer(api: AdminApi):
    for who in ("tom", "pat"):
        grant = {"subject_type": "user", "subject": who, "level": "admin", "namespace": "acme"}
        assert_error(api.call(who, "POST", "/grants", json=grant), 403, "DENIED")
        assert_error(api.call(who, "GET", "/grants", params={"namespace": "acme"}), 403, "DENIED")
        params = {"subject_type": "team", "subject": "acme/admins", "namespace": "acme"}
        assert_error(api.call(who, "DELETE", "/grants", params=params), 403, "DENIED")
    # An org admin's reach ends at the organization.
    grant = {"subject_type": "user", "subject": "olga", "level": "write", "namespace": "tom"}
    assert_error(api.call("olga", "POST", "/grants", json=grant), 403, "DENIED")
    assert_error(api.call("olga", "GET", "/grants", params={"repository": "pat/app"}), 403, "DENIED")


def test_users_grant_in_their_own_namespace_and_see_their_own_grants(api: AdminApi):
    grant = {"subject_type": "user", "subject": "tom", "level": "read", "repository": "pat/shared"}
    assert api.call("pat", "POST", "/grants", json=grant).status_code == 200
    assert _pull_push(api, "tom", "pat/shared") == ["pull"]
    mine = api.call("tom", "GET", "/grants", params={"subject_type": "user", "subject": "tom"}).json()["grants"]
    assert {**grant, "namespace": None} in mine
    # A third party sees only the grants on what they administer: here, none.
    theirs = api.call("olga", "GET", "/grants", params={"subject_type": "user", "subject": "tom"}).json()
    assert theirs == {"grants": []}
    assert api.call("olga", "GET", "/grants", params={"subject_type": "user", "subject": "nobody"}).json() == {
        "grants": []
    }
    assert_error(
        api.call("admin", "GET", "/grants", params={"subject_type": "user", "subject": "nobody"}), 404, "NOT_FOUND"
    )
    everything = api.call("admin", "GET", "/grants", params={"subject_type": "user", "subject": "tom"}).json()
    assert {**grant, "namespace": None} in everything["grants"]


@pytest.mark.parametrize(
    "grant",
    [
        {"subject_type": "user", "subject": "pat", "level": "owner", "namespace": "acme"},
        {"subject_type": "group", "subject": "pat", "level": "read", "namespace": "acme"},
        {"subject_type": "user", "subject": "pat", "level": "read"},
        {"subject_type": "user", "subject": "pat", "level": "read", "namespace": "acme", "repository": "acme/a"},
        {"subject_type": "user", "subject": "pat", "level": "read", "namespace": "acme/a"},
        {"subject_type": "user", "subject": "pat", "level": "read", "repository": "Acme/A"},
        {"subject_type": "user", "subject": "pat", "level": "read", "repository": ""},
        {"subject_type": "team", "subject": "devs", "level": "read", "namespace": "acme"},
        {"subject_type": "user", "subject": 7, "level": "read", "namespace": "acme"},
        {"subject_type": "user", "subject": "pat", "level": "read", "namespace": "acme", "extra": 1},
    ],
)
def test_bad_grants_are_400(api: AdminApi, grant: dict):
    assert_error(api.call("admin", "POST", "/grants", json=grant), 400, "BAD_REQUEST")


def test_grants_to_unknown_subjects_are_404(api: AdminApi):
    for subject_type, subject in (("user", "nobody"), ("team", "acme/nobody"), ("robot", "acme+nobody")):
        grant = {"subject_type": subject_type, "subject": subject, "level": "read", "namespace": "acme"}
        assert_error(api.call("olga", "POST", "/grants", json=grant), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"subject_type": "user"},
        {"subject": "pat"},
        {"subject_type": "user", "subject": "pat", "namespace": "acme"},
        {"namespace": "acme", "repository": "acme/a"},
        {"namespace": "a/b"},
        {"repository": "UPPER"},
        {"subject_type": "nope", "subject": "pat"},
    ],
)
def test_bad_grant_listings_are_400(api: AdminApi, params: dict):
    assert_error(api.call("admin", "GET", "/grants", params=params), 400, "BAD_REQUEST")


def test_bad_grant_removals_are_400(api: AdminApi):
    for params in (
        {"subject_type": "user", "subject": "pat"},
        {"namespace": "acme"},
        {"subject": "pat", "namespace": "acme"},
    ):
        assert_error(api.call("admin", "DELETE", "/grants", params=params), 400, "BAD_REQUEST")
    r = api.call("admin", "DELETE", "/grants?subject_type=user&subject=pat&subject=tom&namespace=acme")
    assert_error(r, 400, "BAD_REQUEST")


# -- visibility ----------------------------------------------------------------------------------


def _push(api: AdminApi, user: str, name: str) -> None:
    r = httpx.get(
        f"{api.url}/token",
        params={"service": "dockyard", "scope": f"repository:{name}:pull,push"},
        auth=(user, PASSWORDS[user]),
    )
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=60) as c:
        push_image(c, name, "v1")


def test_repository_admins_set_visibility(api: AdminApi):
    name = f"pat/{repo('vis')}"
    _push(api, "pat", name)
    anonymous = httpx.get(f"{api.url}/token", params={"service": "dockyard", "scope": f"repository:{name}:pull"})
    assert anonymous.json()["scope"] == ""
    r = api.call("pat", "PUT", f"/repositories/{name}/visibility", json={"visibility": "public"})
    assert r.status_code == 200 and conforms(r.json(), "RepositoryVisibility") == {"name": name, "visibility": "public"}
    anonymous = httpx.get(f"{api.url}/token", params={"service": "dockyard", "scope": f"repository:{name}:pull"})
    assert anonymous.json()["scope"] == f"repository:{name}:pull"
    path = f"/repositories/{name}/visibility"
    assert_error(api.call("tom", "PUT", path, json={"visibility": "private"}), 403, "DENIED")
    # An ADMIN grant on the one repository makes tom its administrator.
    grant = {"subject_type": "user", "subject": "tom", "level": "admin", "repository": name}
    assert api.call("pat", "POST", "/grants", json=grant).status_code == 200
    r = api.call("tom", "PUT", path, json={"visibility": "private"})
    assert r.json() == {"name": name, "visibility": "private"}
    assert api.call("admin", "PUT", path, json={"visibility": "public"}).status_code == 200


def test_visibility_of_a_missing_or_invalid_repository(api: AdminApi):
    assert_error(
        api.call("pat", "PUT", f"/repositories/pat/{repo('none')}/visibility", json={"visibility": "public"}),
        404, "NOT_FOUND",
    )
    assert_error(
        api.call("pat", "PUT", f"/repositories/acme/{repo('none')}/visibility", json={"visibility": "public"}),
        403, "DENIED",
    )
    assert_error(api.call("admin", "PUT", "/repositories/Bad..Name/visibility", json={"visibility": "public"}),
                 400, "BAD_REQUEST")
    assert_error(api.call("pat", "PUT", "/repositories/pat/x/visibility", json={"visibility": "open"}),
                 400, "BAD_REQUEST")


# -- personal access tokens ----------------------------------------------------------------------


def test_personal_access_tokens(api: AdminApi):
    name = repo("ci")
    r = api.call("tom", "POST", "/me/tokens", json={"name": name, "scope": "read", "expires_in_days": 30})
    assert r.status_code == 201
    created = conforms(r.json(), "CreatedAccessToken")
    assert created["name"] == name and created["state"] == "active" and created["expires_at"]
    secret = created["secret"]
    listed = conforms(api.call("tom", "GET", "/me/tokens").json(), "AccessTokenList")["tokens"]
    assert [t["name"] for t in listed if t["name"] == name] == [name] and all("secret" not in t for t in listed)
    me = api.call(None, "GET", "/me", auth=("tom", secret)).json()
    assert me["name"] == "tom" and me["credential"] == {"type": "token", "scope": "read"}
    # A read-only token reads, but changes nothing: not even a stronger token for itself.
    assert api.call(None, "GET", "/me/tokens", auth=("tom", secret)).status_code == 200
    r = api.call(None, "POST", "/me/tokens", auth=("tom", secret), json={"name": repo("esc"), "scope": "admin"})
    assert_error(r, 403, "DENIED")
    # Tokens are one's own: olga neither sees nor revokes tom's.
    assert name not in [t["name"] for t in api.call("olga", "GET", "/me/tokens").json()["tokens"]]
    assert_error(api.call("olga", "DELETE", f"/me/tokens/{name}"), 404, "NOT_FOUND")
    assert api.call("tom", "DELETE", f"/me/tokens/{name}").status_code == 204
    assert_error(api.call("tom", "DELETE", f"/me/tokens/{name}"), 404, "NOT_FOUND")
    assert_error(api.call(None, "GET", "/me", auth=("tom", secret)), 401, "UNAUTHORIZED")
    revoked = [t for t in api.call("tom", "GET", "/me/tokens").json()["tokens"] if t["name"] == name]
    assert revoked[0]["state"] == "revoked" and revoked[0]["revoked_at"]


def test_an_admin_scoped_token_may_change_things(api: AdminApi):
    secret = api.call("tom", "POST", "/me/tokens", json={"name": repo("adm"), "scope": "admin"}).json()["secret"]
    r = api.call(None, "POST", "/me/tokens", auth=("tom", secret), json={"name": repo("more")})
    assert r.status_code == 201 and r.json()["scope"] == "read"


@pytest.mark.parametrize(
    "body",
    [
        {"name": "ok", "scope": "root"},
        {"name": "ok", "expires_in_days": 0},
        {"name": "ok", "expires_in_days": True},
        {"name": "ok", "expires_in_days": 1.5},
        {"name": "ok", "expires_in_days": 10**30},
        {"name": "Not OK"},
        {"scope": "read"},
        {"name": "ok", "secret": "mine"},
    ],
)
def test_bad_token_requests_are_400(api: AdminApi, body: dict):
    assert_error(api.call("pat", "POST", "/me/tokens", json=body), 400, "BAD_REQUEST")


def test_a_token_name_is_unique_among_unrevoked_tokens(api: AdminApi):
    name = repo("dup")
    assert api.call("pat", "POST", "/me/tokens", json={"name": name}).status_code == 201
    assert_error(api.call("pat", "POST", "/me/tokens", json={"name": name}), 400, "BAD_REQUEST")


# -- robots --------------------------------------------------------------------------------------


def test_an_org_admin_manages_robots(api: AdminApi):
    name = repo("bot")
    r = api.call("olga", "POST", "/orgs/acme/robots", json={"name": name})
    assert r.status_code == 201
    created = conforms(r.json(), "CreatedRobot")
    fullname, secret = created["name"], created["secret"]
    assert fullname == f"acme+{name}"
    assert_error(api.call("olga", "POST", "/orgs/acme/robots", json={"name": name}), 400, "BAD_REQUEST")
    listed = conforms(api.call("olga", "GET", "/orgs/acme/robots").json(), "RobotList")["robots"]
    assert fullname in [r["name"] for r in listed]
    # Robots get access through grants, inside their organization only.
    grant = {"subject_type": "robot", "subject": fullname, "level": "write", "namespace": "acme"}
    assert api.call("olga", "POST", "/grants", json=grant).status_code == 200
    outside = {**grant, "namespace": None, "repository": "pat/x"}
    del outside["namespace"]
    assert_error(api.call("pat", "POST", "/grants", json=outside), 400, "BAD_REQUEST")
    listed = api.call("olga", "GET", "/grants", params={"subject_type": "robot", "subject": fullname}).json()
    assert listed == {"grants": [{**grant, "repository": None}]}
    # A robot may ask who it is, and nothing else.
    me = api.call(None, "GET", "/me", auth=(fullname, secret)).json()
    assert me == {"name": fullname, "kind": "robot", "admin": False, "credential": {"type": "robot", "scope": None},
                  "teams": [], "organizations": []}
    assert_error(api.call(None, "GET", "/orgs/acme/robots", auth=(fullname, secret)), 403, "DENIED")
    assert_error(api.call(None, "GET", "/me/tokens", auth=(fullname, secret)), 403, "DENIED")
    assert api.call("olga", "DELETE", f"/orgs/acme/robots/{name}").status_code == 204
    assert_error(api.call("olga", "DELETE", f"/orgs/acme/robots/{name}"), 404, "NOT_FOUND")
    assert_error(api.call(None, "GET", "/me", auth=(fullname, secret)), 401, "UNAUTHORIZED")


# -- bad input, everywhere -----------------------------------------------------------------------


_WITH_BODY = [(m, p) for m, p in _operations() if "requestBody" in DOCUMENT["paths"][p][m.lower()]]


@pytest.mark.parametrize(("method", "path"), _WITH_BODY)
@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'"text"', b"null", b"[" * 50000, b'{"name": "\\ud800", "password": "\\ud800"}', b"\xff\xfe"],
    ids=["empty", "truncated", "array", "string", "null", "deep", "surrogate", "not-utf8"],
)
def test_malformed_bodies_are_400(api: AdminApi, method: str, path: str, content: bytes):
    concrete = path.replace("{org}", "acme").replace("/users/{name}", "/users/admin").replace("{name}", "admin/app")
    concrete = concrete.replace("{namespace}", "acme")
    r = api.call("admin", method, concrete.removeprefix("/api/v1"), content=content,
                 headers={"Content-Type": "application/json"})
    assert_error(r, 400, "BAD_REQUEST")


@pytest.mark.parametrize(
    "body",
    [
        {"name": 5, "password": "x"},
        {"name": "ok", "password": ""},
        {"name": "ok", "password": None},
        {"name": "ok", "password": "x", "admin": "yes"},
        {"name": "ok", "password": "x", "admn": True},
        {"name": "x" * 65, "password": "x"},
        {"name": "ok", "password": "x" * 5000},
        {"name": ["ok"], "password": "x"},
    ],
)
def test_bad_users_are_400(api: AdminApi, body: dict):
    assert_error(api.call("admin", "POST", "/users", json=body), 400, "BAD_REQUEST")


def test_an_oversized_body_is_refused_in_json(api: AdminApi):
    r = api.call("admin", "POST", "/users", content=b'{"name": "' + b"a" * 200_000 + b'"}')
    assert r.status_code in (400, 413)
    assert_error(r, r.status_code)


def test_unknown_paths_and_methods_answer_in_json(api: AdminApi):
    assert_error(api.call("admin", "GET", "/nothing/here"), 404, "NOT_FOUND")
    r = api.call("admin", "PATCH", "/users")
    assert_error(r, 405, "METHOD_NOT_ALLOWED")
    assert set(r.headers["Allow"].split(",")) == {"GET", "POST"}


def test_odd_path_parameters_are_not_500(api: AdminApi):
    for path in ("/users/%ED%A0%80", "/users/%FF/password", "/orgs/%00/teams", "/repositories/%2F%2F/visibility",
                 "/me/tokens/" + "x" * 3000):
        for method in ("GET", "PUT", "DELETE", "POST"):
            r = api.call("admin", method, path, json={"password": "x", "name": "x", "visibility": "public"})
            assert 400 <= r.status_code < 500, (method, path, r.text)
            assert_error(r, r.status_code)
