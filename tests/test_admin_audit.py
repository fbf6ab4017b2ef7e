"""Admin changes in the audit log: every change through the admin API or the ``dockyard`` CLI
is an "admin" event (actor, client, the repository or namespace it concerns, a few words saying
what changed and never a secret), and every refusal by the admin API is one with outcome
"denied". Reads, failed changes and unauthenticated calls are not recorded.

Events from the server are written in batches about once a second, so the API queries poll; the
CLI writes its event in the transaction of the change, so it is there as soon as the command ends.
"""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.oci import assert_error, assert_no_traceback, push_image, repo
from tests.server import RegistryServer

PASSWORDS = {"admin": "audit-admin-pw", "olga": "olga-pw-123", "plain": "plain-pw-123"}
ORG = "audited"


class Api:
    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.url = server.url
        self.passwords = dict(PASSWORDS)
        self._jwts: dict[str, str] = {}

    def jwt(self, name: str, password: str | None = None) -> str:
        if password is not None or name not in self._jwts:
            r = httpx.get(f"{self.url}/token", params={"service": "dockyard"},
                          auth=(name, password or self.passwords[name]), timeout=60)
            assert r.status_code == 200, r.text
            self._jwts[name] = r.json()["token"]
        return self._jwts[name]

    def call(self, who: str | None, method: str, path: str, status: int | None = None, **kw: Any) -> httpx.Response:
        """As ``who`` (None: anonymous); with ``status``, the answer must have it."""
        headers = {"Authorization": f"Bearer {self.jwt(who)}"} if who else {}
        r = httpx.request(method, f"{self.url}/api/v1{path}", headers=headers | kw.pop("headers", {}), timeout=60,
                          **kw)
        if status is not None:
            assert r.status_code == status, (method, path, r.text)
        return r

    def events(self, want: int, **filters: Any) -> list[dict]:
        """The admin events matching ``filters``, oldest first, once there are ``want`` of them."""
        deadline = time.monotonic() + 20
        while True:
            r = self.call("admin", "GET", "/audit", 200, params={"action": "admin", "limit": 1000, **filters})
            found = r.json()["events"][::-1]
            if len(found) >= want or time.monotonic() > deadline:
                return found
            time.sleep(0.3)

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "dockyard", *args, "--data-dir", str(self.server.data_dir)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = RegistryServer(
        tmp_path_factory.mktemp("admin-audit") / "data",
        env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": PASSWORDS["admin"]},
    ).start()
    api = Api(server)
    for name in ("olga", "plain"):
        api.call("admin", "POST", "/users", 201, json={"name": name, "password": PASSWORDS[name]})
    api.call("admin", "POST", "/orgs", 201, json={"name": ORG})
    api.call("admin", "POST", f"/orgs/{ORG}/teams", 201, json={"name": "admins"})
    api.call("admin", "PUT", f"/orgs/{ORG}/teams/admins/members/olga", 204)
    grant = {"subject_type": "team", "subject": f"{ORG}/admins", "level": "admin", "namespace": ORG}
    api.call("admin", "POST", "/grants", 200, json=grant)
    yield api
    server.stop()
    assert_no_traceback(server.log())


def _summary(events: list[dict]) -> list[tuple]:
    return [(e["actor"], e["repository"], e["outcome"], e["detail"]) for e in events]


def _push(api: Api, name: str) -> None:
    r = httpx.get(f"{api.url}/token", params={"service": "dockyard", "scope": f"repository:{name}:pull,push"},
                  auth=("admin", PASSWORDS["admin"]))
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=60) as c:
        push_image(c, name, "v1")


def test_changes_through_the_api_are_audited(api: Api):
    since = time.time()
    user, team, first_pw, second_pw, third_pw = repo("user"), repo("team"), "first-Pw-1x", "second-Pw-2y", "third-3z"
    app = f"{ORG}/{repo('app')}"
    _push(api, app)
    api.call("admin", "POST", "/users", 201, json={"name": user, "password": first_pw})
    api.call("admin", "PUT", f"/users/{user}/password", 204, json={"password": second_pw})
    api.call("admin", "GET", "/users", 200)  # reads are not recorded
    api.call("olga", "POST", f"/orgs/{ORG}/teams", 201, json={"name": team})
    api.call("olga", "PUT", f"/orgs/{ORG}/teams/{team}/members/{user}", 204)
    api.call("olga", "DELETE", f"/orgs/{ORG}/teams/{team}/members/{user}", 204)
    api.call("olga", "GET", f"/orgs/{ORG}/teams", 200)
    robot = api.call("olga", "POST", f"/orgs/{ORG}/robots", 201, json={"name": "ci"}).json()
    grant = {"subject_type": "team", "subject": f"{ORG}/{team}", "level": "write", "namespace": ORG}
    api.call("olga", "POST", "/grants", 200, json=grant)
    api.call("olga", "DELETE", "/grants", 204, params={k: v for k, v in grant.items() if k != "level"})
    api.call("olga", "POST", "/grants", 200, json={"subject_type": "robot", "subject": robot["name"],
                                                    "level": "read", "repository": app})
    api.call("olga", "PUT", f"/repositories/{app}/visibility", 200, json={"visibility": "public"})
    api.call("olga", "DELETE", f"/orgs/{ORG}/robots/ci", 204)
    api.jwt(user, second_pw)
    token = api.call(user, "POST", "/me/tokens", 201, json={"name": "ci", "expires_in_days": 30}).json()
    api.call(user, "DELETE", "/me/tokens/ci", 204)
    api.call(user, "PUT", f"/users/{user}/password", 204, json={"password": third_pw, "current_password": second_pw})
    api.call("admin", "DELETE", f"/users/{repo('missing')}", 404)  # a failed change is not recorded
    api.call("admin", "DELETE", f"/users/{user}", 204)

    expected = [
        ("admin", None, "ok", f"create user {user}"),
        ("admin", None, "ok", f"reset the password of user {user}"),
        ("olga", ORG, "ok", f"create team {ORG}/{team}"),
        ("olga", ORG, "ok", f"add {user} to team {ORG}/{team}"),
        ("olga", ORG, "ok", f"remove {user} from team {ORG}/{team}"),
        ("olga", ORG, "ok", f"create robot {ORG}+ci"),
        ("olga", ORG, "ok", f"grant write to team {ORG}/{team} on namespace {ORG}"),
        ("olga", ORG, "ok", f"revoke the grant of team {ORG}/{team} on namespace {ORG}"),
        ("olga", app, "ok", f"grant read to robot {ORG}+ci on repository {app}"),
        ("olga", app, "ok", f"make repository {app} public"),
        ("olga", ORG, "ok", f"remove robot {ORG}+ci"),
        (user, None, "ok", "create token ci (scope read, expires in 30 days)"),
        (user, None, "ok", "revoke token ci"),
        (user, None, "ok", f"change the password of user {user}"),
        ("admin", None, "ok", f"remove user {user}"),
    ]
    events = api.events(len(expected), since=since, outcome="ok")
    assert _summary(events) == expected
    assert {(e["action"], e["client"]) for e in events} == {("admin", "127.0.0.1")}
    everything = json.dumps(api.events(1, since=since))
    for secret in (first_pw, second_pw, third_pw, robot["secret"], token["secret"]):
        assert secret not in everything
    # The log of one organization, or of one repository, is one filter away.
    assert {e["detail"] for e in api.events(2, since=since, repository=app)} == {
        f"grant read to robot {ORG}+ci on repository {app}", f"make repository {app} public"
    }


def test_organization_creation_is_audited(api: Api):
    since, name = time.time(), repo("org")
    api.call("admin", "POST", "/orgs", 201, json={"name": name})
    assert _summary(api.events(1, since=since)) == [("admin", name, "ok", f"create organization {name}")]


def test_refusals_are_audited_as_denied(api: Api):
    since = time.time()
    grant = {"subject_type": "user", "subject": "plain", "level": "admin", "namespace": ORG}
    assert_error(api.call("plain", "POST", "/grants", json=grant), 403, "DENIED")
    assert_error(api.call("plain", "GET", "/users"), 403, "DENIED")
    assert_error(api.call("olga", "PUT", "/users/plain/password", json={"password": "taken-over"}), 403, "DENIED")
    wrong = {"password": "new-plain-pw", "current_password": "not-it"}
    assert_error(api.call("plain", "PUT", "/users/plain/password", json=wrong), 403, "DENIED")
    read_only = api.call("olga", "POST", "/me/tokens", 201, json={"name": repo("ro"), "scope": "read"}).json()
    r = httpx.post(f"{api.url}/api/v1/orgs/{ORG}/teams", json={"name": "t"}, auth=("olga", read_only["secret"]))
    assert_error(r, 403, "DENIED")
    assert_error(api.call(None, "POST", "/users", json={"name": "x", "password": "y"}), 401, "UNAUTHORIZED")

    denied = api.events(5, since=since, outcome="denied")
    assert _summary(denied) == [
        ("plain", ORG, "denied", f"POST /api/v1/grants: you do not administer '{ORG}/*'"),
        ("plain", None, "denied", "GET /api/v1/users: only a site administrator may do this"),
        ("olga", None, "denied", "PUT /api/v1/users/plain/password: you may only change your own password"),
        ("plain", None, "denied", "PUT /api/v1/users/plain/password: the current password is wrong"),
        ("olga", None, "denied", f"POST /api/v1/orgs/{ORG}/teams: this personal access token may only read here: "
                                 "changes need a token with scope 'admin'"),
    ]
    assert "taken-over" not in json.dumps(denied) and "not-it" not in json.dumps(denied)
    # The anonymous 401 named nobody: no event. The one change that worked (olga's token) is an "ok".
    assert [e["detail"] for e in api.events(1, since=since, outcome="ok")] == [
        f"create token {read_only['name']} (scope read, no expiry)"
    ]


def _cli_actor() -> str:
    return f"cli:{getpass.getuser()}"


def test_changes_through_the_cli_are_audited(api: Api):
    since = time.time()
    user, org, password = repo("cliuser"), repo("cliorg"), "cli-Secret-pw-1"
    app = f"{org}/app"
    api.cli("user", "add", user, "--password", password)
    api.cli("user", "passwd", user, "--password", "cli-Secret-pw-2")
    api.cli("user", "disable", user)
    api.cli("user", "enable", user)
    api.cli("org", "create", org)
    api.cli("team", "create", org, "devs")
    api.cli("team", "add-member", org, "devs", user)
    api.cli("team", "grant", org, "devs", "WRITE", "--namespace", org)
    api.cli("team", "revoke", org, "devs", "--namespace", org)
    api.cli("team", "remove-member", org, "devs", user)
    robot_name, robot_secret = api.cli("robot", "create", org, "ci").split()[:2]
    api.cli("robot", "grant", org, "ci", "read", "--repository", app)
    api.cli("robot", "revoke", org, "ci", "--repository", app)
    api.cli("robot", "remove", org, "ci")
    api.cli("user", "grant", user, "read", "--repository", app)
    api.cli("user", "revoke", user, "--repository", app)
    _push(api, app)
    api.cli("repo", "visibility", app, "public")
    token_secret = api.cli("token", "create", user, "ci", "--scope", "read-write", "--expires-days", "7").strip()
    api.cli("token", "revoke", user, "ci")
    api.cli("user", "remove", user)

    expected = [
        (_cli_actor(), None, "ok", f"create user {user}"),
        (_cli_actor(), None, "ok", f"reset the password of user {user}"),
        (_cli_actor(), None, "ok", f"disable user {user}"),
        (_cli_actor(), None, "ok", f"enable user {user}"),
        (_cli_actor(), org, "ok", f"create organization {org}"),
        (_cli_actor(), org, "ok", f"create team {org}/devs"),
        (_cli_actor(), org, "ok", f"add {user} to team {org}/devs"),
        (_cli_actor(), org, "ok", f"grant write to team {org}/devs on namespace {org}"),
        (_cli_actor(), org, "ok", f"revoke the grant of team {org}/devs on namespace {org}"),
        (_cli_actor(), org, "ok", f"remove {user} from team {org}/devs"),
        (_cli_actor(), org, "ok", f"create robot {robot_name}"),
        (_cli_actor(), app, "ok", f"grant read to robot {robot_name} on repository {app}"),
        (_cli_actor(), app, "ok", f"revoke the grant of robot {robot_name} on repository {app}"),
        (_cli_actor(), org, "ok", f"remove robot {robot_name}"),
        (_cli_actor(), app, "ok", f"grant read to user {user} on repository {app}"),
        (_cli_actor(), app, "ok", f"revoke the grant of user {user} on repository {app}"),
        (_cli_actor(), app, "ok", f"make repository {app} public"),
        (_cli_actor(), None, "ok", f"create token ci of user {user} (scope read-write, expires in 7 days)"),
        (_cli_actor(), None, "ok", f"revoke token ci of user {user}"),
        (_cli_actor(), None, "ok", f"remove user {user}"),
    ]
    events = api.events(len(expected), since=since, actor=_cli_actor())
    assert _summary(events) == expected
    assert {(e["action"], e["client"]) for e in events} == {("admin", "local")}
    for secret in (password, "cli-Secret-pw-2", robot_secret, token_secret):
        assert secret not in json.dumps(events)
    # The CLI reads its own events too.
    lines = [json.loads(line) for line in api.cli("audit", "--action", "admin", "--actor", _cli_actor(),
                                                  "--repository", org, "--json").splitlines()]
    assert lines[0]["detail"] == f"remove robot {robot_name}" and all(e["client"] == "local" for e in lines)


def test_a_failed_cli_change_records_nothing(api: Api):
    since = time.time()
    out = subprocess.run([sys.executable, "-m", "dockyard", "team", "create", repo("nowhere"), "devs",
                          "--data-dir", str(api.server.data_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert api.events(0, since=since, actor=_cli_actor()) == []  # written at once by the CLI: no need to wait
