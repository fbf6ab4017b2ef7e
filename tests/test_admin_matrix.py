"""The admin API's authorization matrix: every route of ``/api/v1`` x every kind of caller.

Callers, each holding a JWT from ``/token`` as the web UI would:

- anonymous: no ``Authorization`` header at all;
- plain user: an account with no grants and no team in organization ``matrix``;
- org admin: ``olga``, administrator of ``matrix`` through its ``admins`` team, which holds ADMIN
  on the namespace (how ``auth.administration`` defines an organization's admins);
- site admin: the first administrator, ``admin``;
- robot: ``matrix+ci``, with a write grant on the namespace, logged in with its secret;
- read-only token: a personal access token of ``olga`` with scope ``read``, so that the cap of
  the credential, not her rights, decides;
- revoked token: a JWT issued from an admin-scoped token of the site admin that was revoked
  afterwards. The admin API reads the credential again on each request (no cache, unlike the
  registry's two-second one), so the token is revoked just before the call and must already fail.

The rules (``api.admin.common`` and the module docstrings of ``users``, ``orgs``, ``grants``):
only the OpenAPI document is open to all; anyone else without a live login gets 401 with a Bearer
challenge; a robot may ask who it is (``GET /me``) and gets 403 for everything else; a personal
access token below scope 'admin' reads what its user may read and gets 403 for any change; then
each operation needs any user (oneself: tokens, own password, the organizations one sees), an
administrator of the organization (teams, robots, grants on and visibility in its namespace,
policies and webhooks there; a site admin administers everything), or a site admin (users,
organizations, quotas, the audit log, garbage collection). Usage of one repository needs read on
it, and a caller without it gets 404, as for a repository that does not exist.

Every cell asserts the exact status, and the error code for refusals. Operations that change
something get a fresh target made by the site admin (a user, team, robot, token, grant of their
own), so every cell is independent and a 403 is about permission, never about a missing object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import httpx
import pytest

from dockyard.api.admin import ROUTES
from tests.oci import assert_error, assert_no_traceback, push_image, repo
from tests.server import RegistryServer

ORG = "matrix"
REPOSITORY = f"{ORG}/app"
PASSWORDS = {"admin": "matrix-admin-pw", "plain": "plain-pw-123", "olga": "olga-pw-123", "member": "member-pw-123"}
CALLERS = ["anonymous", "plain user", "org admin", "site admin", "robot", "read-only token", "revoked token"]
# The account behind each password login, and whose tokens and password "oneself" means. Callers
# without an account of their own act on the site admin's, so that a wrongly accepted call would
# visibly succeed.
ACCOUNT = {"plain user": "plain", "org admin": "olga", "site admin": "admin", "read-only token": "olga"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
TOKEN_TTL = 200  # seconds a cached JWT is reused: /token issues them for 300


class Role(NamedTuple):
    """What a caller is, for ``expected``; None in ``ROLES`` means not authenticated at all."""

    user: bool  # a person (robots are not)
    org_admin: bool  # administers organization ``matrix``
    site_admin: bool
    writes: bool  # its credential may change things (a read-only token may not)


ROLES: dict[str, Role | None] = {
    "anonymous": None,
    "plain user": Role(user=True, org_admin=False, site_admin=False, writes=True),
    "org admin": Role(user=True, org_admin=True, site_admin=False, writes=True),
    "site admin": Role(user=True, org_admin=True, site_admin=True, writes=True),
    "robot": Role(user=False, org_admin=False, site_admin=False, writes=True),
    "read-only token": Role(user=True, org_admin=True, site_admin=False, writes=False),
    "revoked token": None,
}


class World:
    """The server, the callers' logins, and fresh targets made by the site admin."""

    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.url = server.url
        self.logins: dict[str, tuple[str, str]] = {
            caller: (name, PASSWORDS[name]) for caller, name in ACCOUNT.items() if caller != "read-only token"
        }
        self._jwts: dict[str, tuple[str, float]] = {}

    def login(self, name: str, password: str) -> str:
        """A JWT from /token with basic credentials and no scope: what the web UI holds."""
        r = httpx.get(f"{self.url}/token", params={"service": "dockyard"}, auth=(name, password), timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def jwt(self, caller: str) -> str | None:
        if caller == "anonymous":
            return None
        if caller == "revoked token":
            return self._revoked_jwt()
        token, when = self._jwts.get(caller, ("", 0.0))
        if time.monotonic() - when > TOKEN_TTL:
            token = self.login(*self.logins[caller])
            self._jwts[caller] = (token, time.monotonic())
        return token

    def _revoked_jwt(self) -> str:
        name = repo("revoked")
        secret = self.ok("POST", "/me/tokens", 201, json={"name": name, "scope": "admin"}).json()["secret"]
        token = self.login("admin", secret)
        self.ok("DELETE", f"/me/tokens/{name}", 204)
        return token

    def call(self, caller: str, method: str, path: str, **kw: Any) -> httpx.Response:
        token = self.jwt(caller)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=60, **kw)

    def ok(self, method: str, path: str, status: int, *, who: str = "site admin", **kw: Any) -> httpx.Response:
        """A set-up step, by the site admin unless ``who`` says otherwise; it must succeed."""
        r = self.call(who, method, path, **kw)
        assert r.status_code == status, (method, path, r.text)
        return r

    # -- fresh targets -------------------------------------------------------------------------

    def fresh_user(self) -> str:
        name = repo("user")
        self.ok("POST", "/users", 201, json={"name": name, "password": "fresh-pw-123"})
        return name

    def fresh_team(self, member: str | None = None, grant: bool = False) -> str:
        name = repo("team")
        self.ok("POST", f"/orgs/{ORG}/teams", 201, json={"name": name})
        if member:
            self.ok("PUT", f"/orgs/{ORG}/teams/{name}/members/{member}", 204)
        if grant:
            self.ok("POST", "/grants", 200, json=_team_grant(name))
        return name

    def fresh_robot(self) -> str:
        name = repo("bot")
        self.ok("POST", f"/orgs/{ORG}/robots", 201, json={"name": name})
        return name

    def fresh_token(self, caller: str) -> str:
        """An unrevoked token of the account ``caller`` acts as (the site admin's for the others)."""
        name = repo("tok")
        owner = {"plain user": "plain user", "org admin": "org admin", "read-only token": "org admin"}
        self.ok("POST", "/me/tokens", 201, who=owner.get(caller, "site admin"), json={"name": name})
        return name


def _team_grant(team: str) -> dict[str, str]:
    return {"subject_type": "team", "subject": f"{ORG}/{team}", "level": "write", "namespace": ORG}


def _grant_query(team: str) -> dict[str, str]:
    return {"subject_type": "team", "subject": f"{ORG}/{team}", "namespace": ORG}


def _policy_op(method: str, kind: str) -> Callable[[World, str], httpx.Response]:
    """``method`` on the ``kind`` policy of a fresh repository of the organization (made first by
    the site admin, unless the call is the one that sets it)."""
    rules = {"retention": {"keep_last": 5}, "immutability": {"patterns": ["v*"]}}[kind]

    def request(w: World, caller: str) -> httpx.Response:
        target = {"repository": f"{ORG}/{repo('policy')}"}
        if method != "PUT":
            w.ok("PUT", f"/policies/{kind}", 200, params=target, json=rules)
        return w.call(caller, method, f"/policies/{kind}", params=target, json=rules if method == "PUT" else None)

    return request


def _remove_quota(w: World, caller: str) -> httpx.Response:
    namespace = repo("ns")
    w.ok("PUT", f"/quotas/{namespace}", 200, json={"limit_bytes": 10**9})
    return w.call(caller, "DELETE", f"/quotas/{namespace}")


HOOK_URL = "http://127.0.0.1:9/hook"  # nothing listens: deliveries stay pending, retried later


def _fresh_webhook(w: World) -> int:
    body = {"namespace": ORG, "url": HOOK_URL, "events": ["push"]}
    return w.ok("POST", "/webhooks", 201, json=body).json()["id"]


def _redeliver(w: World, caller: str) -> httpx.Response:
    hook = _fresh_webhook(w)
    delivery = w.ok("POST", f"/webhooks/{hook}/ping", 202).json()["delivery_id"]
    return w.call(caller, "POST", f"/webhooks/{hook}/deliveries/{delivery}/redeliver")


def _own_password(w: World, caller: str) -> httpx.Response:
    """Set one's password to what it is, proving the current one: changes nothing for later cells."""
    name = ACCOUNT.get(caller, "admin" if caller != "robot" else f"{ORG}+ci")
    password = PASSWORDS.get(name, "not-a-password")
    return w.call(caller, "PUT", f"/users/{name}/password", json={"password": password, "current_password": password})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = RegistryServer(
        tmp_path_factory.mktemp("admin-matrix") / "data",
        env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": PASSWORDS["admin"]},
    ).start()
    w = World(server)
    for name in ("plain", "olga", "member"):
        w.ok("POST", "/users", 201, json={"name": name, "password": PASSWORDS[name]})
    w.ok("POST", "/orgs", 201, json={"name": ORG})
    w.ok("POST", f"/orgs/{ORG}/teams", 201, json={"name": "admins"})
    w.ok("PUT", f"/orgs/{ORG}/teams/admins/members/olga", 204)
    w.ok("POST", "/grants", 200, json={"subject_type": "team", "subject": f"{ORG}/admins", "level": "admin",
                                        "namespace": ORG})
    robot = w.ok("POST", f"/orgs/{ORG}/robots", 201, json={"name": "ci"}).json()
    w.ok("POST", "/grants", 200, json={"subject_type": "robot", "subject": robot["name"], "level": "write",
                                        "namespace": ORG})
    w.logins["robot"] = (robot["name"], robot["secret"])
    read_only = w.ok("POST", "/me/tokens", 201, who="org admin", json={"name": "ro", "scope": "read"}).json()
    w.logins["read-only token"] = ("olga", read_only["secret"])
    r = httpx.get(f"{w.url}/token", params={"service": "dockyard", "scope": f"repository:{REPOSITORY}:pull,push"},
                  auth=("admin", PASSWORDS["admin"]))
    with httpx.Client(base_url=w.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=60) as c:
        push_image(c, REPOSITORY, "v1")
    yield w
    server.stop()
    assert_no_traceback(server.log())


# Each operation: its route as registered in ``dockyard.api.admin.ROUTES``, who may do it
# ("nobody" needs no credentials, "anyone" includes robots, "user" is any person acting on what is
# theirs or on what they may see, "org admin" administers organization matrix, "site admin"), the
# status on success, and the request (with its fresh target).
class Op(NamedTuple):
    method: str
    route: str
    need: str
    success: int
    request: Callable[[World, str], httpx.Response]


MEMBER = "/orgs/{org}/teams/{team}/members/{user}"
OPS: dict[str, Op] = {
    "openapi document": Op("GET", "/openapi.json", "nobody", 200, lambda w, c: w.call(c, "GET", "/openapi.json")),
    # me
    "who am I": Op("GET", "/me", "anyone", 200, lambda w, c: w.call(c, "GET", "/me")),
    "list own tokens": Op("GET", "/me/tokens", "user", 200, lambda w, c: w.call(c, "GET", "/me/tokens")),
    "create own token": Op("POST", "/me/tokens", "user", 201, lambda w, c: w.call(
        c, "POST", "/me/tokens", json={"name": repo("tok"), "scope": "read"})),
    "revoke own token": Op("DELETE", "/me/tokens/{name}", "user", 204, lambda w, c: w.call(
        c, "DELETE", f"/me/tokens/{w.fresh_token(c)}")),
    # users
    "list users": Op("GET", "/users", "site admin", 200, lambda w, c: w.call(c, "GET", "/users")),
    "create user": Op("POST", "/users", "site admin", 201, lambda w, c: w.call(
        c, "POST", "/users", json={"name": repo("user"), "password": "new-pw-123"})),
    "remove user": Op("DELETE", "/users/{name}", "site admin", 204, lambda w, c: w.call(
        c, "DELETE", f"/users/{w.fresh_user()}")),
    "disable a user": Op("PATCH", "/users/{name}", "site admin", 200, lambda w, c: w.call(
        c, "PATCH", f"/users/{w.fresh_user()}", json={"disabled": True})),
    "change own password": Op("PUT", "/users/{name}/password", "user", 204, _own_password),
    "reset someone's password": Op("PUT", "/users/{name}/password", "site admin", 204, lambda w, c: w.call(
        c, "PUT", f"/users/{w.fresh_user()}/password", json={"password": "reset-pw-123"})),
    # organizations, teams, robots
    "list organizations": Op("GET", "/orgs", "user", 200, lambda w, c: w.call(c, "GET", "/orgs")),
    "create organization": Op("POST", "/orgs", "site admin", 201, lambda w, c: w.call(
        c, "POST", "/orgs", json={"name": repo("org")})),
    "list teams": Op("GET", "/orgs/{org}/teams", "org admin", 200, lambda w, c: w.call(
        c, "GET", f"/orgs/{ORG}/teams")),
    "create team": Op("POST", "/orgs/{org}/teams", "org admin", 201, lambda w, c: w.call(
        c, "POST", f"/orgs/{ORG}/teams", json={"name": repo("team")})),
    "add team member": Op("PUT", MEMBER, "org admin", 204, lambda w, c: w.call(
        c, "PUT", f"/orgs/{ORG}/teams/{w.fresh_team()}/members/member")),
    "remove team member": Op("DELETE", MEMBER, "org admin", 204, lambda w, c: w.call(
        c, "DELETE", f"/orgs/{ORG}/teams/{w.fresh_team(member='member')}/members/member")),
    "list robots": Op("GET", "/orgs/{org}/robots", "org admin", 200, lambda w, c: w.call(
        c, "GET", f"/orgs/{ORG}/robots")),
    "create robot": Op("POST", "/orgs/{org}/robots", "org admin", 201, lambda w, c: w.call(
        c, "POST", f"/orgs/{ORG}/robots", json={"name": repo("bot")})),
    "remove robot": Op("DELETE", "/orgs/{org}/robots/{name}", "org admin", 204, lambda w, c: w.call(
        c, "DELETE", f"/orgs/{ORG}/robots/{w.fresh_robot()}")),
    # grants and visibility
    "grants on the namespace": Op("GET", "/grants", "org admin", 200, lambda w, c: w.call(
        c, "GET", "/grants", params={"namespace": ORG})),
    "grants of a team": Op("GET", "/grants", "user", 200, lambda w, c: w.call(
        c, "GET", "/grants", params={"subject_type": "team", "subject": f"{ORG}/admins"})),
    "give a grant": Op("POST", "/grants", "org admin", 200, lambda w, c: w.call(
        c, "POST", "/grants", json=_team_grant(w.fresh_team()))),
    "take a grant back": Op("DELETE", "/grants", "org admin", 204, lambda w, c: w.call(
        c, "DELETE", "/grants", params=_grant_query(w.fresh_team(grant=True)))),
    "set visibility": Op("PUT", "/repositories/{name:.+}/visibility", "org admin", 200, lambda w, c: w.call(
        c, "PUT", f"/repositories/{REPOSITORY}/visibility", json={"visibility": "private"})),
    # the audit log
    "read the audit log": Op("GET", "/audit", "site admin", 200, lambda w, c: w.call(c, "GET", "/audit")),
    # retention and immutability policies, retention runs, quotas
    "list policies": Op("GET", "/policies", "user", 200, lambda w, c: w.call(c, "GET", "/policies")),
    **{f"{verb} a {kind} policy": Op(method, f"/policies/{kind}", "org admin", status, _policy_op(method, kind))
       for kind in ("retention", "immutability")
       for verb, method, status in (("read", "GET", 200), ("set", "PUT", 200), ("remove", "DELETE", 204))},
    "run retention": Op("POST", "/retention/run", "org admin", 200, lambda w, c: w.call(
        c, "POST", "/retention/run", params={"namespace": ORG, "dry_run": "true"})),
    "list retention runs": Op("GET", "/retention/runs", "site admin", 200, lambda w, c: w.call(
        c, "GET", "/retention/runs")),
    "list quotas": Op("GET", "/quotas", "user", 200, lambda w, c: w.call(c, "GET", "/quotas")),
    "read a quota": Op("GET", "/quotas/{namespace}", "org admin", 200, lambda w, c: w.call(c, "GET", f"/quotas/{ORG}")),
    "set a quota": Op("PUT", "/quotas/{namespace}", "site admin", 200, lambda w, c: w.call(
        c, "PUT", f"/quotas/{repo('ns')}", json={"limit_bytes": 10**9})),
    "remove a quota": Op("DELETE", "/quotas/{namespace}", "site admin", 204, _remove_quota),
    # webhooks: managed by whoever administers their target
    "list webhooks": Op("GET", "/webhooks", "user", 200, lambda w, c: w.call(c, "GET", "/webhooks")),
    "create webhook": Op("POST", "/webhooks", "org admin", 201, lambda w, c: w.call(
        c, "POST", "/webhooks", json={"namespace": ORG, "url": HOOK_URL})),
    "remove webhook": Op("DELETE", "/webhooks/{id}", "org admin", 204, lambda w, c: w.call(
        c, "DELETE", f"/webhooks/{_fresh_webhook(w)}")),
    "delivery log": Op("GET", "/webhooks/{id}/deliveries", "org admin", 200, lambda w, c: w.call(
        c, "GET", f"/webhooks/{_fresh_webhook(w)}/deliveries")),
    "redeliver": Op("POST", "/webhooks/{id}/deliveries/{delivery_id}/redeliver", "org admin", 202, _redeliver),
    "ping webhook": Op("POST", "/webhooks/{id}/ping", "org admin", 202, lambda w, c: w.call(
        c, "POST", f"/webhooks/{_fresh_webhook(w)}/ping")),
    # usage: what the caller can pull; a private repository they cannot is "not found"
    "usage overview": Op("GET", "/usage", "user", 200, lambda w, c: w.call(c, "GET", "/usage")),
    "usage of a repository": Op("GET", "/usage/repositories/{name:.+}", "reader", 200, lambda w, c: w.call(
        c, "GET", f"/usage/repositories/{REPOSITORY}")),
    # garbage collection spans every repository
    "run a collection": Op("POST", "/gc", "site admin", 200, lambda w, c: w.call(
        c, "POST", "/gc", params={"dry_run": "true"})),
    "list collections": Op("GET", "/gc/runs", "site admin", 200, lambda w, c: w.call(c, "GET", "/gc/runs")),
}


def expected(caller: str, op: str) -> tuple[int, str | None]:
    """The status and error code the rules in the module docstring give for this cell."""
    method, _, need, success, _ = OPS[op]
    if need == "nobody":
        return success, None
    role = ROLES[caller]
    if role is None:
        return 401, "UNAUTHORIZED"
    if not role.user:
        return (success, None) if need == "anyone" else (403, "DENIED")
    if method not in SAFE_METHODS and not role.writes:
        return 403, "DENIED"
    if need == "reader":  # may pull the private repository; anyone else must not learn it exists
        return (success, None) if role.org_admin else (404, "NOT_FOUND")
    allowed = {"anyone": True, "user": True, "org admin": role.org_admin, "site admin": role.site_admin}[need]
    return (success, None) if allowed else (403, "DENIED")


def test_the_matrix_covers_every_route():
    """A new route without a row here fails: its permissions must be decided, not assumed."""
    routed = {(method, path) for method, path, _ in ROUTES}
    covered = {(op.method, op.route) for op in OPS.values()}
    assert covered == routed, {"missing": routed - covered, "unknown": covered - routed}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("op", list(OPS))
def test_matrix(world: World, caller: str, op: str):
    r = OPS[op].request(world, caller)
    status, code = expected(caller, op)
    assert r.status_code == status, (caller, op, r.status_code, r.text[:300])
    if code is None:
        return
    assert_error(r, status, code)
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith(f'Bearer realm="{world.url}/token",service="dockyard"')


# -- what a refusal does not tell ----------------------------------------------------------------------

_ORG_SCOPED = [
    ("GET", "/orgs/{org}/teams", None),
    ("POST", "/orgs/{org}/teams", {"name": "t"}),
    ("PUT", "/orgs/{org}/teams/admins/members/member", None),
    ("DELETE", "/orgs/{org}/teams/admins/members/olga", None),
    ("GET", "/orgs/{org}/robots", None),
    ("POST", "/orgs/{org}/robots", {"name": "r"}),
    ("DELETE", "/orgs/{org}/robots/ci", None),
]


@pytest.mark.parametrize("caller", [c for c, role in ROLES.items() if role is None or not role.org_admin])
def test_a_missing_organization_answers_like_one_the_caller_may_not_manage(world: World, caller: str):
    missing = repo("none")
    for method, path, body in _ORG_SCOPED:
        answers = []
        for org in (ORG, missing):
            r = world.call(caller, method, path.replace("{org}", org), json=body)
            answers.append((r.status_code, r.json()["errors"][0]["code"]))
        assert answers[0] == answers[1] and answers[0][0] in (401, 403), (caller, method, path, answers)


_SUBJECTS = {"user": ("member", "nobody"), "team": (f"{ORG}/admins", f"{ORG}/nobody"),
             "robot": (f"{ORG}+ci", f"{ORG}+nobody")}


@pytest.mark.parametrize("caller", ["plain user", "org admin", "read-only token"])
@pytest.mark.parametrize("subject_type", list(_SUBJECTS))
def test_grant_listings_by_subject_do_not_reveal_who_exists(world: World, caller: str, subject_type: str):
    """Someone who does not administer a subject sees only its grants on what they administer,
    and the same empty list for a subject that does not exist; an organization's admins see
    the whole list of its teams and robots."""
    existing, missing = (
        world.call(caller, "GET", "/grants", params={"subject_type": subject_type, "subject": subject})
        for subject in _SUBJECTS[subject_type]
    )
    assert existing.status_code == 200, existing.text
    if ROLES[caller].org_admin and subject_type != "user":
        assert existing.json()["grants"], existing.json()
        assert_error(missing, 404, "NOT_FOUND")
    else:
        assert existing.json() == {"grants": []}
        assert (missing.status_code, missing.json()) == (200, {"grants": []})


def test_a_removed_users_tokens_do_not_become_the_next_users(world: World):
    """SQLite gives the id of the newest user to the next one once it is removed; the tokens of
    the removed user (which carry that id) must die with it, not act as the new account, here a
    site admin. Found while building this matrix: the admin API answered them as the new user."""
    gone = world.fresh_user()
    r = httpx.get(f"{world.url}/token", params={"service": "dockyard", "offline_token": "true"},
                  auth=(gone, "fresh-pw-123"))
    access, refresh = r.json()["token"], r.json()["refresh_token"]
    world.ok("DELETE", f"/users/{gone}", 204)
    world.ok("POST", "/users", 201, json={"name": repo("boss"), "password": "boss-pw-123", "admin": True})
    r = httpx.get(f"{world.url}/api/v1/me", headers={"Authorization": f"Bearer {access}"})
    assert_error(r, 401, "UNAUTHORIZED")
    r = httpx.post(f"{world.url}/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                               "service": "dockyard"})
    assert r.status_code == 401, r.text
