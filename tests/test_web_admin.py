"""The web UI's administration pages (``/admin``) against a real ``dockyard serve --auth token``,
driven over HTTP the way a browser does (cookies, forms with their CSRF tokens).

What must hold: everything made in the pages works in the registry (a token logs in, a grant
lets its user push, an immutability rule refuses a push, a webhook delivers a ping); the pages
apply exactly the admin API's permission rules (an organization's administrator manages it but
gets the "Not allowed" page for users and the audit log, a plain user cannot manage an
organization); every change and refusal lands in the audit log as it would from the API; secrets
are shown once; forms need their CSRF token; user-controlled text is escaped.

Callers: the site admin, ``olga`` (administrator of organization ``acme`` through its ``admins``
team), ``pat`` (a plain user); tests that change an account make one of their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests import oci
from tests.oci import assert_no_traceback, push_image, repo
from tests.server import RegistryServer
from tests.test_webhooks import Receiver
from tests.web_helpers import csrf_of, post_form, sign_in

ADMIN_PASSWORD = "web-admin-pw-1"
PASSWORDS = {"admin": ADMIN_PASSWORD, "olga": "olga-pw-123", "pat": "pat-pw-123"}
ORG = "acme"
WAIT = 60.0
_SECRET_FIELD = re.compile(r'id="new-secret" readonly value="([^"]+)"')


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


class World:
    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.url = server.url

    def api(self, method: str, path: str, who: str = "admin", **kw: Any) -> httpx.Response:
        """The JSON admin API with basic credentials: how the fixtures are made, and the reference
        the pages are compared with."""
        return httpx.request(method, f"{self.url}/api/v1{path}", auth=(who, PASSWORDS[who]), timeout=60, **kw)

    @contextmanager
    def browser(self, who: str | None = None, password: str | None = None) -> Iterator[httpx.Client]:
        """A browser's cookies, signed in as ``who`` (with their password unless given another)."""
        with httpx.Client(base_url=self.url, timeout=60, follow_redirects=False) as client:
            if who is not None:
                r = sign_in(client, who, password or PASSWORDS[who])
                assert r.status_code == 303, r.text
            yield client

    def login(self, user: str, secret: str) -> int:
        """The status of ``GET /token`` with basic credentials, as ``docker login`` sends them."""
        return httpx.get(
            f"{self.url}/token", params={"service": "dockyard"}, auth=(user, secret), timeout=60
        ).status_code

    def user(self, prefix: str = "u", password: str = "user-pw-123") -> str:
        name = repo(prefix)
        assert self.api("POST", "/users", json={"name": name, "password": password}).status_code == 201
        PASSWORDS[name] = password
        return name

    def registry(self, user: str, password: str, name: str, actions: str = "pull,push") -> httpx.Client:
        """A registry client holding a JWT for ``name`` from /token with ``user``'s credentials."""
        params = {"service": "dockyard", "scope": f"repository:{name}:{actions}"}
        r = httpx.get(f"{self.url}/token", params=params, auth=(user, password), timeout=60)
        assert r.status_code == 200, r.text
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=60)

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        r = self.api("GET", "/audit", params=params)
        assert r.status_code == 200, r.text
        return r.json()["events"]

    def logged(self, details: set[str], **params: Any) -> None:
        """Wait until admin events with these details are in the log (it is written every second)."""
        params = {"action": "admin", "limit": 1000, **params}
        wait_for(lambda: details <= {e["detail"] for e in self.audit(**params)}, f"{details} in the audit log")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = RegistryServer(
        tmp_path_factory.mktemp("web-admin") / "data",
        env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD, "DOCKYARD_GC_INTERVAL": "0",
             "DOCKYARD_WEBHOOK_TIMEOUT": "3"},
    ).start()  # fmt: skip
    w = World(server)
    for name in ("olga", "pat"):
        assert w.api("POST", "/users", json={"name": name, "password": PASSWORDS[name]}).status_code == 201
    assert w.api("POST", "/orgs", json={"name": ORG}).status_code == 201
    assert w.api("POST", f"/orgs/{ORG}/teams", json={"name": "admins"}).status_code == 201
    assert w.api("PUT", f"/orgs/{ORG}/teams/admins/members/olga").status_code == 204
    grant = {"subject_type": "team", "subject": f"{ORG}/admins", "level": "admin", "namespace": ORG}
    assert w.api("POST", "/grants", json=grant).status_code == 200
    yield w
    server.stop()
    assert_no_traceback(server.log())


def secret_on(html: str) -> str:
    """The secret shown once, from the read-only field of the ``.secret`` box with its copy button."""
    assert 'class="secret"' in html and "shown only this once" in html
    found = _SECRET_FIELD.search(html)
    assert found, "no secret on the page"
    assert f'data-copy="{found.group(1)}"' in html
    return found.group(1)


def refused(r: httpx.Response, message: str) -> None:
    """The "Not allowed" page, with the admin API's reason."""
    assert r.status_code == 403, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    assert "<title>Not allowed · dockyard</title>" in r.text and message in r.text, r.text


# -- signing in, open registries, CSRF -----------------------------------------------------------


def test_signed_out_visitors_are_sent_to_sign_in(world: World):
    with world.browser() as b:
        for path in ("/admin", "/admin/tokens", "/admin/orgs/acme", "/admin/audit?actor=pat"):
            r = b.get(path)
            assert r.status_code == 302, path
            assert r.headers["location"].startswith("/login?next="), r.headers["location"]
        assert httpx.URL(b.get("/admin/audit?actor=pat").headers["location"]).params["next"] == "/admin/audit?actor=pat"
        assert b.post("/admin/tokens", data={"name": "x"}).status_code == 302  # nothing made


def test_forms_without_their_csrf_token_are_refused(world: World):
    with world.browser("pat") as b:
        name = repo("tok")
        assert b.post("/admin/tokens", data={"name": name, "scope": "read"}).status_code == 403
        assert b.post("/admin/tokens", data={"name": name, "scope": "read", "csrf": "forged"}).status_code == 403
        token = csrf_of(b.get("/admin/tokens").text)
        evil = b.post("/admin/tokens", data={"name": name, "csrf": token}, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        assert name not in b.get("/admin/tokens").text  # none of them made a token
        with world.browser("admin") as admin:
            assert admin.post("/admin/users", data={"name": repo("u"), "password": "x-123456"}).status_code == 403
            assert admin.post(f"/admin/users/{name}/remove", data={}).status_code == 403


def test_an_open_registry_has_no_accounts_to_administer(tmp_path):
    server = RegistryServer(tmp_path / "data", env={"DOCKYARD_AUTH": "none"}).start()
    try:
        with httpx.Client(base_url=server.url, follow_redirects=False) as b:
            r = b.get("/admin")
            assert r.status_code == 200 and "runs without accounts" in r.text
            assert b.get("/admin/tokens").headers["location"] == "/admin"
            assert b.post("/admin/users", data={}).headers["location"] == "/admin"
    finally:
        server.stop()


# -- personal access tokens --------------------------------------------------------------------


def test_a_token_made_in_the_ui_is_shown_once_works_with_the_registry_and_can_be_revoked(world: World):
    name = repo("ci")
    with world.browser("pat") as b:
        empty = b.get("/admin/tokens")
        assert empty.status_code == 200 and "<title>Your access tokens · dockyard</title>" in empty.text
        r = post_form(b, "/admin/tokens", "/admin/tokens", {"name": name, "scope": "read-write", "days": "30"})
        assert r.status_code == 200
        secret = secret_on(r.text)
        assert secret.startswith("dyp_")
        assert r.headers["cache-control"] == "no-store"
        listing = b.get("/admin/tokens").text
        assert name in listing and "read-write" in listing and secret not in listing  # once only
        assert world.login("pat", secret) == 200
        # The token is listed with its expiry and a confirmed, dangerous revoke button.
        assert re.search(rf'action="/admin/tokens/{name}/revoke" class="inline"\s+data-confirm="Revoke token', listing)
        assert 'class="danger">Revoke' in listing
        revoked = post_form(b, "/admin/tokens", f"/admin/tokens/{name}/revoke", {})
        assert revoked.status_code == 303 and revoked.headers["location"] == "/admin/tokens?done=token-revoked"
        after = b.get(revoked.headers["location"]).text
        assert "logins with it fail from now on" in after and "state-revoked" in after
        assert world.login("pat", secret) == 401
        again = post_form(b, "/admin/tokens", f"/admin/tokens/{name}/revoke", {})
        assert again.status_code == 404 and "you have no unrevoked token named" in again.text
    # Audited as the API audits it, in the API's words.
    world.logged({f"create token {name} (scope read-write, expires in 30 days)", f"revoke token {name}"}, actor="pat")


def test_token_form_errors_are_shown_in_the_form(world: World):
    with world.browser("pat") as b:
        bad = post_form(b, "/admin/tokens", "/admin/tokens", {"name": "Bad Name", "scope": "read"})
        assert bad.status_code == 400 and "invalid token name" in bad.text and 'value="Bad Name"' in bad.text
        bad = post_form(b, "/admin/tokens", "/admin/tokens", {"name": repo("t"), "scope": "root"})
        assert bad.status_code == 400 and "the scope must be one of read, read-write, admin" in bad.text
        bad = post_form(b, "/admin/tokens", "/admin/tokens", {"name": repo("t"), "scope": "read", "days": "0"})
        assert bad.status_code == 400 and "whole number of days" in bad.text


# -- users and passwords -----------------------------------------------------------------------


def test_site_admin_manages_users_in_the_ui(world: World):
    name = repo("dora")
    with world.browser("admin") as b:
        r = post_form(b, "/admin/users", "/admin/users", {"name": name, "password": "dora-pw-123"})
        assert r.status_code == 303 and r.headers["location"] == "/admin/users?done=user-created"
        page = b.get("/admin/users").text
        assert name in page and f'data-confirm="Remove user {name} with' in page
        with world.browser(name, "dora-pw-123") as dora:
            assert dora.get("/admin").status_code == 200
            # Disabling ends the session at once, and the password stops working.
            assert (
                post_form(b, "/admin/users", f"/admin/users/{name}/disabled", {"disabled": "true"}).status_code == 303
            )
            assert dora.get("/admin").status_code == 302
        with world.browser() as stranger:
            assert sign_in(stranger, name, "dora-pw-123").status_code == 401
        assert post_form(b, "/admin/users", f"/admin/users/{name}/disabled", {"disabled": "false"}).status_code == 303
        assert (
            post_form(b, "/admin/users", f"/admin/users/{name}/password", {"password": "new-pw-456"}).status_code == 303
        )
        with world.browser(name, "new-pw-456"):
            pass  # signs in
        own = post_form(b, "/admin/users", "/admin/users/admin/disabled", {"disabled": "true"})
        assert own.status_code == 400 and "you cannot disable your own account" in own.text
        own = post_form(b, "/admin/users", "/admin/users/admin/remove", {})
        assert own.status_code == 400 and "you cannot remove your own account" in own.text
        gone = post_form(b, "/admin/users", f"/admin/users/{name}/remove", {})
        assert gone.status_code == 303 and name not in b.get("/admin/users").text
    world.logged({f"create user {name}", f"disable user {name}", f"enable user {name}",
                  f"reset the password of user {name}", f"remove user {name}"}, actor="admin")  # fmt: skip


def test_changing_ones_own_password_needs_the_current_one(world: World):
    name = world.user("chris", "chris-pw-123")
    with world.browser(name) as b:
        form = {"current": "wrong-pw", "password": "chris-pw-456", "again": "chris-pw-456"}
        wrong = post_form(b, "/admin/password", "/admin/password", form)
        assert wrong.status_code == 403 and "the current password is wrong" in wrong.text  # shown in the form
        differ = post_form(b, "/admin/password", "/admin/password", {**form, "current": "chris-pw-123", "again": "x"})
        assert differ.status_code == 400 and "differ" in differ.text
        ok = post_form(b, "/admin/password", "/admin/password", {**form, "current": "chris-pw-123"})
        assert ok.status_code == 303
    with world.browser(name, "chris-pw-456"):
        pass  # signs in with the new password
    # The refusal is audited as the API audits it.
    denied = wait_for(lambda: world.audit(actor=name, outcome="denied"), "the refusal in the log")
    assert denied[0]["action"] == "admin" and "the current password is wrong" in denied[0]["detail"]


# -- organizations, teams, grants, robots --------------------------------------------------------


def test_a_site_admin_builds_an_organization_whose_member_can_push(world: World):
    user, org, team = world.user("dev"), repo("org"), "builders"
    with world.browser("admin") as b:
        made = post_form(b, "/admin/orgs", "/admin/orgs", {"name": org})
        assert made.status_code == 303 and made.headers["location"] == f"/admin/orgs/{org}?done=org-created"
        page = f"/admin/orgs/{org}"
        assert "No teams yet" in b.get(page).text
        assert post_form(b, page, f"{page}/teams", {"name": team}).status_code == 303
        assert post_form(b, page, f"{page}/teams/{team}/members", {"user": user}).status_code == 303
        grant = {"subject_type": "team", "subject": f"{org}/{team}", "level": "write", "repository": ""}
        given = post_form(b, page, f"{page}/grants", grant)
        assert given.status_code == 303 and given.headers["location"] == f"{page}?done=grant-given"
        html = b.get(page).text
        assert f"<title>Organization {org} · dockyard</title>" in html
        assert f"<h3>{team}</h3>" in html and f"<li>{user}" in html
        assert f"<code>{org}/*</code>" in html and "<td>write</td>" in html
        missing = post_form(b, page, f"{page}/teams/{team}/members", {"user": "nobody-here"})
        assert missing.status_code == 404 and "no user named &#39;nobody-here&#39;" in missing.text
    with world.registry(user, PASSWORDS[user], f"{org}/app") as registry:
        push_image(registry, f"{org}/app", "v1")
    with world.browser("admin") as b:  # and taking the grant back takes the push away
        take = {"subject_type": "team", "subject": f"{org}/{team}", "namespace": org}
        assert post_form(b, page, f"{page}/grants/remove", take).status_code == 303
        assert post_form(b, page, f"{page}/teams/{team}/members/{user}/remove", {}).status_code == 303
    with world.registry(user, PASSWORDS[user], f"{org}/app") as registry:
        image = oci.make_image()
        assert oci.put_manifest(registry, f"{org}/app", "v2", image.content, image.media_type).status_code == 401
    world.logged({f"create team {org}/{team}", f"add {user} to team {org}/{team}",
                  f"grant write to team {org}/{team} on namespace {org}",
                  f"revoke the grant of team {org}/{team} on namespace {org}"}, repository=org)  # fmt: skip


def test_an_org_admin_manages_their_org_but_not_users_or_the_audit_log(world: World):
    with world.browser("olga") as b:
        page = f"/admin/orgs/{ORG}"
        assert b.get(page).status_code == 200
        team = repo("team")
        assert post_form(b, page, f"{page}/teams", {"name": team}).status_code == 303
        bot = repo("bot")
        made = post_form(b, page, f"{page}/robots", {"name": bot})
        assert made.status_code == 200
        secret = secret_on(made.text)
        assert secret.startswith("dyr_") and f"{ORG}+{bot}" in made.text
        assert secret not in b.get(page).text
        assert world.login(f"{ORG}+{bot}", secret) == 200
        removed = post_form(b, page, f"{page}/robots/{bot}/remove", {})
        assert removed.status_code == 303
        assert world.login(f"{ORG}+{bot}", secret) == 401
        overview = b.get("/admin").text
        assert 'href="/admin/users"' not in overview and 'href="/admin/audit"' not in overview
        assert f'href="/admin/orgs/{ORG}"' in overview
        refused(b.get("/admin/users"), "only a site administrator may do this")
        refused(b.get("/admin/audit"), "only a site administrator may do this")
        token = csrf_of(overview)
        refused(b.post("/admin/users", data={"csrf": token, "name": repo("x"), "password": "pw-123456"}),
                "only a site administrator may do this")  # fmt: skip
        refused(b.post("/admin/orgs", data={"csrf": token, "name": repo("org")}), "only a site administrator")
        # Another organization, existing or not, is "not allowed" alike, as in the API.
        other = repo("other")
        assert world.api("POST", "/orgs", json={"name": other}).status_code == 201
        refused(b.get(f"/admin/orgs/{other}"), f"only an administrator of organization &#39;{other}&#39;")
        refused(b.get("/admin/orgs/no-such-org"), "only an administrator of organization &#39;no-such-org&#39;")
    with world.browser("admin") as b:
        missing = b.get("/admin/orgs/no-such-org")
        assert missing.status_code == 404 and "no organization named" in missing.text


def test_a_plain_user_cannot_manage_an_organization(world: World):
    with world.browser("pat") as b:
        overview = b.get("/admin")
        assert overview.status_code == 200
        for link in ('href="/admin/users"', 'href="/admin/audit"', f'href="/admin/orgs/{ORG}"'):
            assert link not in overview.text
        refused(b.get(f"/admin/orgs/{ORG}"), f"only an administrator of organization &#39;{ORG}&#39;")
        token = csrf_of(overview.text)
        refused(b.post(f"/admin/orgs/{ORG}/teams", data={"csrf": token, "name": "sneaky"}), "only an administrator")
        grant = {"csrf": token, "subject_type": "user", "subject": "pat", "level": "admin", "repository": ""}
        refused(b.post(f"/admin/orgs/{ORG}/grants", data=grant), f"you do not administer &#39;{ORG}/*&#39;")
    assert "sneaky" not in world.api("GET", f"/orgs/{ORG}/teams").text
    refusal = f"POST /admin/orgs/{ORG}/teams: only an administrator of organization {ORG!r} may do this"
    world.logged({refusal}, actor="pat", outcome="denied", repository=ORG)


# -- policies and quotas -----------------------------------------------------------------------


def test_policies_set_in_the_ui_are_enforced(world: World):
    name = f"{ORG}/{repo('imm')}"
    with world.registry("admin", ADMIN_PASSWORD, name, "pull,push,delete") as registry:
        push_image(registry, name, "v1")
        with world.browser("olga") as b:
            rule = {"target_type": "repository", "target": name, "patterns": "v*, release-*"}
            r = post_form(b, "/admin/policies", "/admin/policies/immutability", rule)
            assert r.status_code == 303 and r.headers["location"] == "/admin/policies?done=policy-set"
            listing = b.get("/admin/policies").text
            assert f"<code>{name}</code>" in listing and "immutable: v*, release-*" in listing
            again = oci.make_image()
            for blob in again.blobs:
                oci.push_blob(registry, name, blob)
            over = oci.put_manifest(registry, name, "v1", again.content, again.media_type)
            assert over.status_code == 403 and "immutable" in over.text
            oci.push_manifest(registry, name, "latest", again.content)  # not matched by the rule
            # Retention: the same validation as the API, errors shown in the form.
            retention = {"target_type": "namespace", "target": ORG, "keep_last": "", "keep_tags": "",
                         "untagged_older_than": "", "keep_pulled_within": ""}  # fmt: skip
            empty = post_form(b, "/admin/policies", "/admin/policies/retention", retention)
            assert empty.status_code == 400 and "a retention policy needs at least one of" in empty.text
            bad = post_form(
                b, "/admin/policies", "/admin/policies/retention", {**retention, "keep_pulled_within": "soon"}
            )
            assert bad.status_code == 400 and "&#39;soon&#39; is not a duration" in bad.text
            bad = post_form(b, "/admin/policies", "/admin/policies/retention", {**retention, "keep_tags": "a/b"})
            assert bad.status_code == 400 and "may hold only tag characters" in bad.text
            ok = {**retention, "keep_last": "5", "keep_tags": "latest", "untagged_older_than": "7d"}
            assert post_form(b, "/admin/policies", "/admin/policies/retention", ok).status_code == 303
            assert "keep the newest 5; keep latest" in b.get("/admin/policies").text
            with world.browser("pat") as p:  # not an administrator of acme
                refused(
                    post_form(p, "/admin/policies", "/admin/policies/retention", ok),
                    f"you do not administer &#39;{ORG}/*&#39;",
                )
                assert name not in p.get("/admin/policies").text
            removed = post_form(b, "/admin/policies", "/admin/policies/immutability/remove",
                                {"target_type": "repository", "target": name})  # fmt: skip
            assert removed.status_code == 303
        oci.push_manifest(registry, name, "v1", again.content)  # mutable again
    policy = world.api("GET", "/policies/retention", params={"namespace": ORG}).json()
    assert policy["rules"] == {"keep_last": 5, "keep_tags": ["latest"], "untagged_older_than": 7 * 86400,
                               "keep_pulled_within": None}  # fmt: skip


def test_quotas_are_set_by_site_admins_and_read_by_namespace_admins(world: World):
    with world.browser("admin") as b:
        bad = post_form(b, "/admin/quotas", "/admin/quotas", {"namespace": ORG, "limit": "lots"})
        assert bad.status_code == 400 and "is not a size" in bad.text
        assert post_form(b, "/admin/quotas", "/admin/quotas", {"namespace": ORG, "limit": "2GiB"}).status_code == 303
    assert world.api("GET", f"/quotas/{ORG}").json()["limit_bytes"] == 2 * 1024**3
    with world.browser("olga") as b:
        page = b.get("/admin/quotas").text
        assert f"<code>{ORG}</code>" in page and "2.1 GB" in page and 'action="/admin/quotas"' not in page
        refused(
            post_form(b, "/admin/quotas", "/admin/quotas", {"namespace": ORG, "limit": "1TB"}), "site administrator"
        )
        refused(post_form(b, "/admin/quotas", f"/admin/quotas/{ORG}/remove", {}), "site administrator")
    with world.browser("pat") as b:
        assert f"<code>{ORG}</code>" not in b.get("/admin/quotas").text
    with world.browser("admin") as b:
        assert post_form(b, "/admin/quotas", f"/admin/quotas/{ORG}/remove", {}).status_code == 303
    assert world.api("GET", f"/quotas/{ORG}").json()["limit_bytes"] is None


# -- webhooks ----------------------------------------------------------------------------------


def test_a_webhook_made_in_the_ui_shows_its_secret_once_and_logs_a_ping(world: World):
    receiver = Receiver({}).start()
    try:
        with world.browser("olga") as b:
            form = {"target_type": "namespace", "target": ORG, "url": receiver.url("ui"), "events": ["push", "delete"]}
            made = post_form(b, "/admin/webhooks", "/admin/webhooks", form)
            assert made.status_code == 200, made.text
            secret = secret_on(made.text)
            receiver.secrets["ui"] = secret  # the receiver checks signatures with the secret shown
            webhook_id = int(re.search(r'href="/admin/webhooks/(\d+)">Open its delivery log', made.text).group(1))
            listing = b.get("/admin/webhooks").text
            assert secret not in listing and receiver.url("ui") in listing
            pinged = post_form(b, "/admin/webhooks", f"/admin/webhooks/{webhook_id}/ping", {})
            assert (
                pinged.status_code == 303 and pinged.headers["location"] == f"/admin/webhooks/{webhook_id}?done=pinged"
            )
            wait_for(lambda: [r for r in receiver.at("ui") if r.verified], "the signed ping")

            def delivered() -> str | None:
                html = b.get(f"/admin/webhooks/{webhook_id}").text
                return html if "delivery-delivered" in html else None

            log = wait_for(delivered, "the ping delivered in the log")
            assert "<td>ping</td>" in log and '<td class="num">200</td>' in log and " ms</td>" in log
            delivery = re.search(r"/deliveries/([0-9a-f-]{36})/redeliver", log).group(1)
            page = f"/admin/webhooks/{webhook_id}"
            again = post_form(b, page, f"{page}/deliveries/{delivery}/redeliver", {})
            assert again.status_code == 303
            wait_for(lambda: len(receiver.by_delivery("ui").get(delivery, [])) == 2, "the redelivery")
            assert "No failed deliveries" in b.get(f"/admin/webhooks/{webhook_id}?status=failed").text
            bad = post_form(b, "/admin/webhooks", "/admin/webhooks", {**form, "url": "ftp://example.com/"})
            assert bad.status_code == 400 and "must start with http:// or https://" in bad.text
            with world.browser("pat") as p:
                refused(p.get(f"/admin/webhooks/{webhook_id}"), f"you do not administer &#39;{ORG}/*&#39;")
                refused(
                    post_form(p, "/admin/webhooks", f"/admin/webhooks/{webhook_id}/ping", {}), "you do not administer"
                )
            gone = post_form(b, "/admin/webhooks", f"/admin/webhooks/{webhook_id}/remove", {})
            assert gone.status_code == 303 and b.get(f"/admin/webhooks/{webhook_id}").status_code == 404
    finally:
        receiver.stop()


# -- the audit log -----------------------------------------------------------------------------


def test_the_audit_log_filters_and_pages(world: World):
    probe = world.user("probe")
    with world.browser(probe) as b:
        for _ in range(105):  # refusals are audited: enough of them for two pages
            assert b.get("/admin/users").status_code == 403
    with world.browser("admin") as b:

        def page_of_probe() -> str | None:
            html = b.get("/admin/audit", params={"actor": probe, "outcome": "denied"}).text
            return html if html.count("GET /admin/users: only a site administrator") == 100 else None

        first = wait_for(page_of_probe, "a full page of the probe's refusals")
        assert "<title>Audit log · dockyard</title>" in first
        older = re.search(r'<a href="(/admin/audit\?[^"]+)">Older events</a>', first).group(1).replace("&amp;", "&")
        assert f"actor={probe}" in older and "outcome=denied" in older and "before_id=" in older
        rest = b.get(older).text
        assert rest.count("GET /admin/users: only a site administrator") >= 5 and "Older events" not in rest
        assert "create user" not in rest  # the filters still apply on older pages
        admin_only = b.get("/admin/audit", params={"actor": "admin", "action": "admin"}).text
        assert f"create user {probe}" in admin_only and "only a site administrator" not in admin_only
        nothing = b.get("/admin/audit", params={"actor": probe, "until": "2000-01-01T00:00"}).text
        assert "No events match these filters." in nothing
        since = b.get("/admin/audit", params={"actor": probe, "since": "2000-01-01"}).text
        assert "only a site administrator" in since
        bad = b.get("/admin/audit", params={"since": "yesterday"})
        assert bad.status_code == 400 and "must be a date" in bad.text
        bad = b.get("/admin/audit", params={"action": "dance"})
        assert bad.status_code == 400 and "action must be one of" in bad.text


# -- escaping ----------------------------------------------------------------------------------


def test_user_controlled_text_is_escaped_in_the_admin_pages(world: World):
    script = "<script>alert(1)</script>"
    receiver_url = f"http://127.0.0.1:9/hook?x={script}"  # ASCII without spaces: a valid webhook URL
    with world.browser("admin") as b:
        bad = post_form(b, "/admin/users", "/admin/users", {"name": script, "password": "pw-123456"})
        assert bad.status_code == 400 and "invalid user name" in bad.text
        assert script not in bad.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in bad.text
        bad = post_form(b, "/admin/tokens", "/admin/tokens", {"name": f'"><img src=x>{script}', "scope": "read"})
        assert bad.status_code == 400 and script not in bad.text and "<img src=x>" not in bad.text
        hook = {"target_type": "namespace", "target": ORG, "url": receiver_url, "events": ["push"]}
        made = post_form(b, "/admin/webhooks", "/admin/webhooks", hook)
        assert made.status_code == 200, made.text
        listing = b.get("/admin/webhooks").text
        assert script not in listing and "x=&lt;script&gt;" in listing
        svg = "<svg onload=alert(1)>"
        missing = b.get(f"/admin/orgs/{svg}")
        assert (
            missing.status_code == 404 and "no organization named &#39;&lt;svg onload=alert(1)&gt;&#39;" in missing.text
        )
        assert svg not in missing.text
    # A failed sign-in records the name typed, whatever it is: the audit page shows it as text.
    assert sign_in(httpx.Client(base_url=world.url), script, "nope").status_code == 401
    with world.browser("admin") as b:

        def logged() -> str | None:
            html = b.get("/admin/audit", params={"actor": script}).text
            return html if "<td>login</td>" in html else None

        html = wait_for(logged, "the failed login in the log")
        assert script not in html and "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html
        webhooks = b.get("/admin/audit", params={"action": "admin", "repository": ORG}).text
        assert "create webhook" in webhooks and script not in webhooks
