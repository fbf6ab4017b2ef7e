"""Webhooks against a real ``dockyard serve --auth token`` and a local receiver.

The receiver (``Receiver``) is an HTTP server on 127.0.0.1 that checks each request's signature the
way the documentation tells receivers to (HMAC-SHA256 over "<t>.<raw body>", constant-time compare,
timestamp within five minutes), answers 401 when it does not verify, and records everything. It can
be taken down (its port closed) and brought back on the same port, and the registry can be
restarted or killed in between: every event must still arrive, once per delivery id (a repeat is
allowed only as the same id with the same body, the at-least-once case of a crash mid-send).

Waiting is polling until a condition holds, with a generous bound; nothing asserts on timing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.oci import assert_error, assert_no_traceback, push_image, repo
from tests.server import RegistryServer, free_port
from tests.test_admin_api import conforms

ADMIN_PASSWORD = "hooks-admin-123"
PASSWORDS = {"admin": ADMIN_PASSWORD, "olga": "olga-pw-123", "tom": "tom-pw-123", "pat": "pat-pw-123"}
SECRET = "receiver-secret-0123456789"
ENV = {"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD, "DOCKYARD_WEBHOOK_TIMEOUT": "3"}
WAIT = 90.0  # an upper bound for polling, far above what any step needs


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


# -- the receiver ----------------------------------------------------------------------------------


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """What a receiver does with X-Dockyard-Signature: t=<unix time>,v1=<hex HMAC-SHA256("<t>.<body>")>."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        sent_at = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - sent_at) > tolerance:  # an old request replayed
        return False
    expected = hmac.new(secret.encode(), f"{sent_at}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers["x-dockyard-delivery"]


class Receiver:
    """Webhook endpoints ``/<name>``, each checked with the secret given for it in ``secrets``."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.port = free_port()
        self.status = 200  # what a verified request gets
        self.got: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                secret = receiver.secrets.get(self.path.lstrip("/"), "")
                ok = verify(secret, self.headers.get("X-Dockyard-Signature", ""), body, time.time())
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.got.append(Received(self.path.lstrip("/"), headers, body, ok))
                self.send_response(receiver.status if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: the registry's connections are refused until ``start``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def at(self, name: str) -> list[Received]:
        with self._lock:
            return [r for r in self.got if r.path == name]

    def by_delivery(self, name: str) -> dict[str, list[Received]]:
        found: dict[str, list[Received]] = {}
        for r in self.at(name):
            found.setdefault(r.delivery_id, []).append(r)
        return found


# -- the registry ----------------------------------------------------------------------------------


class Api:
    """The admin API and registry tokens of one server, for the users in PASSWORDS."""

    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self._tokens: dict[str, str] = {}

    def call(self, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        if who not in self._tokens:
            r = httpx.get(f"{self.server.url}/token", params={"service": "dockyard"}, auth=(who, PASSWORDS[who]))
            assert r.status_code == 200, r.text
            self._tokens[who] = r.json()["token"]
        headers = {"Authorization": f"Bearer {self._tokens[who]}"}
        return httpx.request(method, f"{self.server.url}/api/v1{path}", headers=headers, timeout=60, **kw)

    def forget_tokens(self) -> None:
        self._tokens.clear()

    def registry(self, who: str, name: str) -> httpx.Client:
        """A registry client with a token for pull, push and delete on ``name``."""
        scope = f"repository:{name}:pull,push,delete"
        r = httpx.get(
            f"{self.server.url}/token", params={"service": "dockyard", "scope": scope}, auth=(who, PASSWORDS[who])
        )
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        return httpx.Client(base_url=self.server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def add_webhook(self, who: str, url: str, **fields: Any) -> dict[str, Any]:
        r = self.call(who, "POST", "/webhooks", json={"url": url, "secret": SECRET, **fields})
        assert r.status_code == 201, r.text
        return conforms(r.json(), "CreatedWebhook")

    def deliveries(self, who: str, webhook_id: int, **params: Any) -> list[dict[str, Any]]:
        r = self.call(who, "GET", f"/webhooks/{webhook_id}/deliveries", params={"limit": 1000, **params})
        assert r.status_code == 200, r.text
        return conforms(r.json(), "WebhookDeliveryPage")["deliveries"]


def _populate(api: Api) -> None:
    """olga administers organization acme (team admins); tom writes to it (team devs); pat is on his own."""
    for name in ("olga", "tom", "pat"):
        assert api.call("admin", "POST", "/users", json={"name": name, "password": PASSWORDS[name]}).status_code == 201
    assert api.call("admin", "POST", "/orgs", json={"name": "acme"}).status_code == 201
    for team, member, level in (("admins", "olga", "admin"), ("devs", "tom", "write")):
        assert api.call("admin", "POST", "/orgs/acme/teams", json={"name": team}).status_code == 201
        assert api.call("admin", "PUT", f"/orgs/acme/teams/{team}/members/{member}").status_code == 204
        grant = {"subject_type": "team", "subject": f"acme/{team}", "level": level, "namespace": "acme"}
        assert api.call("admin", "POST", "/grants", json=grant).status_code == 200


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, Receiver]]:
    """One registry and one receiver, shared by the tests that neither restart nor kill anything."""
    server = RegistryServer(tmp_path_factory.mktemp("webhooks") / "data", env=ENV).start()
    api = Api(server)
    _populate(api)
    receiver = Receiver({}).start()
    yield api, receiver
    receiver.stop()
    server.stop()
    assert_no_traceback(server.log())


@pytest.fixture
def own(tmp_path) -> Iterator[tuple[Api, Receiver]]:
    """A registry of the test's own, for tests that restart or kill it; the receiver starts down."""
    server = RegistryServer(tmp_path / "data", env=ENV).start()
    api = Api(server)
    _populate(api)
    receiver = Receiver({})
    yield api, receiver
    receiver.stop()
    server.stop()
    assert_no_traceback(server.log())


def _endpoint(receiver: Receiver, secret: str = SECRET) -> tuple[str, str]:
    """A fresh receiver path and its URL."""
    name = repo("hook")
    receiver.secrets[name] = secret
    return name, receiver.url(name)


def _received(receiver: Receiver, name: str, count: int) -> list[Received]:
    return wait_for(lambda: len(receiver.at(name)) >= count and receiver.at(name), f"{count} deliveries at {name}")


# -- what arrives ----------------------------------------------------------------------------------


def test_push_pull_and_delete_arrive_signed_with_their_payloads(world):
    api, receiver = world
    name, url = _endpoint(receiver)
    image_repo = f"acme/{repo('app')}"
    hook = api.add_webhook("olga", url, repository=image_repo, events=["push", "delete", "pull"])
    with api.registry("olga", image_repo) as c:
        image = push_image(c, image_repo, "v1")
        assert c.get(f"/v2/{image_repo}/manifests/v1", headers={"Accept": image.media_type}).status_code == 200
        _received(receiver, name, 2)  # the pull is written within a second; then the delete
        assert c.delete(f"/v2/{image_repo}/manifests/v1").status_code == 202
    got = _received(receiver, name, 3)
    assert all(r.verified for r in got)
    by_type = {r.payload["type"]: r for r in got}
    assert sorted(by_type) == ["delete", "pull", "push"] and len(got) == 3
    for kind, r in by_type.items():
        payload = conforms(r.payload, "WebhookPayload")
        assert r.headers["x-dockyard-event"] == kind
        assert r.headers["content-type"] == "application/json"
        assert r.headers["user-agent"].startswith("dockyard")
        assert r.headers["x-dockyard-attempt"] == "1"
        assert payload["id"] == r.delivery_id
        assert payload["repository"] == {"name": image_repo, "namespace": "acme"}
        assert payload["target"]["digest"] == image.digest
        assert payload["target"]["tags"] == ["v1"] and payload["target"]["tag"] == "v1"
        assert payload["actor"] == {"name": "olga"}
        assert payload["webhook"] == {"id": hook["id"]}
    for kind in ("push", "pull"):
        assert by_type[kind].payload["target"]["media_type"] == image.media_type
        assert by_type[kind].payload["target"]["size"] == len(image.content)
    log = wait_for(
        lambda: (
            all(d["status"] == "delivered" for d in api.deliveries("olga", hook["id"]))
            and api.deliveries("olga", hook["id"])
        ),
        "a delivered log",
    )
    assert {d["delivery_id"] for d in log} == {r.delivery_id for r in got}
    for d in log:
        assert d["attempts"] == 1 and d["last_status"] == 200 and d["last_duration_ms"] is not None
        assert d["delivered_at"] is not None and d["next_attempt_at"] is None
        assert d["payload"] == next(r.payload for r in got if r.delivery_id == d["delivery_id"])


def test_a_namespace_webhook_sees_every_repository_in_it_and_only_its_events(world):
    api, receiver = world
    name, url = _endpoint(receiver)
    api.add_webhook("olga", url, namespace="acme")  # push and delete by default
    first, second = f"acme/{repo('a')}", f"acme/{repo('b')}"
    for image_repo in (first, second):
        with api.registry("olga", image_repo) as c:
            push_image(c, image_repo, "latest")
            assert c.get(f"/v2/{image_repo}/manifests/latest").status_code == 200  # no pull events asked for
    with api.registry("pat", "pat/other") as c:
        push_image(c, "pat/other", "latest")  # another namespace
    got = _received(receiver, name, 2)
    assert sorted(r.payload["repository"]["name"] for r in got) == sorted([first, second])
    assert {r.payload["type"] for r in got} == {"push"}
    # Anything more would have been queued with those pushes; a ping sent now arrives after them.
    hook_id = got[0].payload["webhook"]["id"]
    r = api.call("olga", "POST", f"/webhooks/{hook_id}/ping")
    assert r.status_code == 202, r.text
    ping = conforms(r.json(), "WebhookDelivery")
    assert ping["event"] == "ping" and ping["status"] == "pending"
    wait_for(lambda: ping["delivery_id"] in receiver.by_delivery(name), "the ping")
    assert [r.payload["type"] for r in receiver.at(name)].count("push") == 2


def test_one_event_to_two_webhooks_is_two_deliveries_of_one_event(world):
    api, receiver = world
    (first, first_url), (second, second_url) = _endpoint(receiver), _endpoint(receiver)
    image_repo = f"acme/{repo('two')}"
    api.add_webhook("olga", first_url, repository=image_repo)
    api.add_webhook("olga", second_url, namespace="acme")
    with api.registry("olga", image_repo) as c:
        push_image(c, image_repo, "v1")
    [a] = _received(receiver, first, 1)
    [b] = wait_for(
        lambda: [r for r in receiver.at(second) if r.payload["repository"]["name"] == image_repo],
        "the second webhook's delivery",
    )
    assert a.delivery_id != b.delivery_id
    assert a.payload["event_id"] == b.payload["event_id"]


def test_a_wrong_secret_is_detected_and_the_log_says_so(world):
    api, receiver = world
    name, url = _endpoint(receiver, secret="not-the-secret-the-registry-has")
    image_repo = f"acme/{repo('sig')}"
    hook = api.add_webhook("olga", url, repository=image_repo)
    with api.registry("olga", image_repo) as c:
        push_image(c, image_repo, "v1")
    [got] = _received(receiver, name, 1)
    assert not got.verified  # the receiver refused it with 401
    assert verify(SECRET, got.headers["x-dockyard-signature"], got.body, time.time())  # the right key verifies
    tampered = got.body.replace(b'"v1"', b'"v2"')
    assert tampered != got.body
    assert not verify(SECRET, got.headers["x-dockyard-signature"], tampered, time.time())
    assert not verify(SECRET, got.headers["x-dockyard-signature"], got.body, time.time() + 3600)  # a replay
    [entry] = wait_for(
        lambda: [d for d in api.deliveries("olga", hook["id"]) if d["attempts"] >= 1], "the failed attempt in the log"
    )
    assert entry["status"] == "pending" and entry["last_status"] == 401
    assert entry["last_error"].startswith("HTTP 401") and entry["next_attempt_at"] is not None
    api.call("olga", "DELETE", f"/webhooks/{hook['id']}")


def test_redelivery_sends_the_same_id_and_body_again(world):
    api, receiver = world
    name, url = _endpoint(receiver)
    image_repo = f"acme/{repo('again')}"
    hook = api.add_webhook("olga", url, repository=image_repo)
    with api.registry("olga", image_repo) as c:
        push_image(c, image_repo, "v1")
    [first] = _received(receiver, name, 1)
    wait_for(lambda: api.deliveries("olga", hook["id"], status="delivered"), "the delivered status")
    r = api.call("olga", "POST", f"/webhooks/{hook['id']}/deliveries/{first.delivery_id}/redeliver")
    assert r.status_code == 202, r.text
    assert conforms(r.json(), "WebhookDelivery")["status"] == "pending"
    _, second = _received(receiver, name, 2)
    assert second.delivery_id == first.delivery_id and second.body == first.body and second.verified


def test_a_webhook_added_with_the_cli_gets_the_running_servers_events(world):
    api, receiver = world
    name, url = _endpoint(receiver)
    image_repo = f"pat/{repo('cli')}"
    data_dir = str(api.server.data_dir)

    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "dockyard", "webhook", *args, "--data-dir", data_dir],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, (args, out.stderr)
        return out.stdout

    hook_id, secret = cli("add", url, "--repository", image_repo, "--event", "push").split()
    receiver.secrets[name] = secret
    assert f"{hook_id}\t{image_repo}\tpush\tenabled" in cli("list", "--repository", image_repo)

    def pushed_and_delivered() -> list[Received]:  # the server reads the webhook list again within seconds
        with api.registry("pat", image_repo) as c:
            push_image(c, image_repo, "v1")
        time.sleep(0.5)
        return receiver.at(name)

    wait_for(pushed_and_delivered, "a push seen by the webhook the CLI added")
    [got, *_] = receiver.at(name)
    assert got.verified and got.payload["repository"]["name"] == image_repo
    log = cli("deliveries", hook_id)
    assert got.delivery_id in log
    cli("remove", hook_id)
    assert cli("list", "--repository", image_repo) == ""


# -- the admin API: permissions and bad input -----------------------------------------------------


def test_who_manages_which_webhooks(world):
    api, receiver = world
    _, url = _endpoint(receiver)
    acme = api.add_webhook("olga", url, namespace="acme")
    assert "secret" in acme and acme["secret"] == SECRET
    generated = api.call("pat", "POST", "/webhooks", json={"url": url, "repository": "pat/app", "events": ["pull"]})
    assert generated.status_code == 201, generated.text
    mine = conforms(generated.json(), "CreatedWebhook")
    assert len(mine["secret"]) >= 32 and mine["events"] == ["pull"]

    def listed(who: str, **params: Any) -> set[int]:
        r = api.call(who, "GET", "/webhooks", params=params)
        assert r.status_code == 200, r.text
        found = conforms(r.json(), "WebhookList")["webhooks"]
        assert all("secret" not in w for w in found)
        return {w["id"] for w in found}

    assert acme["id"] in listed("olga") and mine["id"] not in listed("olga")
    assert mine["id"] in listed("pat") and acme["id"] not in listed("pat")
    assert acme["id"] not in listed("tom") and mine["id"] not in listed("tom")  # a writer, not an administrator
    assert {acme["id"], mine["id"]} <= listed("admin")
    assert listed("admin", namespace="pat") >= {mine["id"]} and acme["id"] not in listed("admin", namespace="pat")
    assert listed("admin", repository="pat/app") == {mine["id"]}

    for who, body in (
        ("tom", {"namespace": "acme"}),
        ("tom", {"repository": "acme/app"}),
        ("pat", {"namespace": "acme"}),
        ("olga", {"repository": "pat/app"}),
    ):
        r = api.call(who, "POST", "/webhooks", json={"url": url, **body})
        assert_error(r, 403, "DENIED")
    for who in ("tom", "pat"):
        for method, path in (
            ("DELETE", ""),
            ("GET", "/deliveries"),
            ("POST", "/ping"),
            ("POST", "/deliveries/00000000-0000-4000-8000-000000000000/redeliver"),
        ):
            assert_error(api.call(who, method, f"/webhooks/{acme['id']}{path}"), 403, "DENIED")
    assert_error(api.call("olga", "DELETE", f"/webhooks/{mine['id']}"), 403, "DENIED")
    assert api.call("admin", "GET", f"/webhooks/{mine['id']}/deliveries").status_code == 200
    assert api.call("pat", "DELETE", f"/webhooks/{mine['id']}").status_code == 204
    assert_error(api.call("pat", "DELETE", f"/webhooks/{mine['id']}"), 404, "NOT_FOUND")
    assert api.call("olga", "DELETE", f"/webhooks/{acme['id']}").status_code == 204
    r = api.call("admin", "GET", "/audit", params={"action": "admin", "repository": "acme"})
    assert any(
        e["detail"] == f"create webhook {acme['id']} on namespace acme for push,delete" for e in r.json()["events"]
    )


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/hook", "namespace": "acme"},
        {"url": "HTTP://example.com/hook", "namespace": "acme"},
        {"url": "http:///no-host", "namespace": "acme"},
        {"url": "http://example.com:99999/", "namespace": "acme"},
        {"url": "http://example.com/a b", "namespace": "acme"},
        {"url": "http://exämple.com/", "namespace": "acme"},
        {"url": "http://example.com/" + "x" * 3000, "namespace": "acme"},
        {"url": 5, "namespace": "acme"},
        {"namespace": "acme"},
        {"url": "http://example.com/", "namespace": "acme", "events": ["build"]},
        {"url": "http://example.com/", "namespace": "acme", "events": []},
        {"url": "http://example.com/", "namespace": "acme", "events": "push"},
        {"url": "http://example.com/", "namespace": "acme", "events": [1]},
        {"url": "http://example.com/", "namespace": "acme", "events": None},
        {"url": "http://example.com/", "namespace": "acme", "secret": "short"},
        {"url": "http://example.com/", "namespace": "acme", "secret": "x" * 256},
        {"url": "http://example.com/", "namespace": "acme", "secret": "tab\there-0123456789"},
        {"url": "http://example.com/", "namespace": "acme", "secret": None},
        {"url": "http://example.com/", "namespace": "acme", "repository": "acme/app"},
        {"url": "http://example.com/"},
        {"url": "http://example.com/", "namespace": None, "repository": "acme/app"},
        {"url": "http://example.com/", "namespace": "acme/app"},
        {"url": "http://example.com/", "repository": "Acme/App"},
        {"url": "http://example.com/", "namespace": "acme", "enabled": True},
    ],
)
def test_bad_webhooks_are_400(world, body: dict):
    api, _ = world
    assert_error(api.call("admin", "POST", "/webhooks", json=body), 400, "BAD_REQUEST")


def test_bad_paths_and_queries_are_400_and_unknown_ones_404(world):
    api, receiver = world
    _, url = _endpoint(receiver)
    hook = api.add_webhook("olga", url, namespace="acme")
    base = f"/webhooks/{hook['id']}"
    for method, path in (
        ("DELETE", "/webhooks/x"),
        ("DELETE", "/webhooks/0"),
        ("DELETE", "/webhooks/-1"),
        ("GET", "/webhooks/1.5/deliveries"),
        ("DELETE", "/webhooks/" + "9" * 30),
        ("POST", f"{base}/deliveries/not-a-uuid/redeliver"),
        ("POST", f"{base}/deliveries/00000000-0000-4000-8000-00000000000A/redeliver"),
        ("GET", f"{base}/deliveries?status=lost"),
        ("GET", f"{base}/deliveries?limit=0"),
        ("GET", f"{base}/deliveries?limit=1001"),
        ("GET", f"{base}/deliveries?before_id=x"),
        ("GET", f"{base}/deliveries?limit=1&limit=2"),
    ):
        assert_error(api.call("admin", method, path), 400, "BAD_REQUEST")
    for method, path in (
        ("DELETE", "/webhooks/999999"),
        ("GET", "/webhooks/999999/deliveries"),
        ("POST", "/webhooks/999999/ping"),
        ("POST", f"{base}/deliveries/00000000-0000-4000-8000-000000000000/redeliver"),
    ):
        assert_error(api.call("olga", method, path), 404, "NOT_FOUND")
    assert api.call("olga", "DELETE", base).status_code == 204


def test_the_delivery_log_pages_newest_first(world):
    api, receiver = world
    name, url = _endpoint(receiver)
    image_repo = f"acme/{repo('pages')}"
    hook = api.add_webhook("olga", url, repository=image_repo)
    with api.registry("olga", image_repo) as c:
        for tag in ("a", "b", "c"):
            push_image(c, image_repo, tag)
    _received(receiver, name, 3)
    pages, before = [], None
    while True:
        params = {"limit": 2, **({"before_id": before} if before else {})}
        r = api.call("olga", "GET", f"/webhooks/{hook['id']}/deliveries", params=params)
        page = conforms(r.json(), "WebhookDeliveryPage")
        pages.append([d["payload"]["target"]["tag"] for d in page["deliveries"]])
        before = page["next_before_id"]
        if before is None:
            break
    assert [tag for page in pages for tag in page] == ["c", "b", "a"]
    api.call("olga", "DELETE", f"/webhooks/{hook['id']}")


# -- durability: a receiver down, restarts, a crash ------------------------------------------------


def _assert_each_event_once(receiver: Receiver, name: str, log: list[dict[str, Any]]) -> None:
    """Every delivery of the log arrived, verified; a delivery id seen twice carried the same body;
    and no event arrived under two delivery ids."""
    got = receiver.by_delivery(name)
    assert set(got) == {d["delivery_id"] for d in log}
    for copies in got.values():
        assert all(c.verified for c in copies)
        assert len({c.body for c in copies}) == 1
    events = [copies[0].payload["event_id"] for copies in got.values()]
    assert len(events) == len(set(events))


def test_every_event_arrives_once_across_a_receiver_outage_and_a_restart(own):
    api, receiver = own
    name, url = _endpoint(receiver)
    image_repo = f"acme/{repo('outage')}"
    hook = api.add_webhook("olga", url, repository=image_repo)
    pushed = {}
    with api.registry("olga", image_repo) as c:
        for tag in ("one", "two", "three"):
            pushed[tag] = push_image(c, image_repo, tag).digest
    # The receiver is down: each delivery fails its first attempt and waits for the next.
    wait_for(
        lambda: len(log := api.deliveries("olga", hook["id"])) == 3 and all(d["attempts"] >= 1 for d in log),
        "a failed first attempt of each delivery",
    )
    for d in api.deliveries("olga", hook["id"]):
        assert d["status"] == "pending" and d["last_status"] is None and "Connect" in d["last_error"]
    api.server.stop()
    api.server.start()
    api.forget_tokens()
    with api.registry("olga", image_repo) as c:
        pushed["four"] = push_image(c, image_repo, "four").digest
        assert c.delete(f"/v2/{image_repo}/manifests/one").status_code == 202
    receiver.start()
    wait_for(lambda: len(receiver.by_delivery(name)) == 5, "five deliveries")
    log = wait_for(
        lambda: (log := api.deliveries("olga", hook["id"])) and all(d["status"] == "delivered" for d in log) and log,
        "every delivery delivered",
    )
    assert len(log) == 5
    _assert_each_event_once(receiver, name, log)
    received = [copies[0].payload for copies in receiver.by_delivery(name).values()]
    assert sorted((p["type"], p["target"]["tag"], p["target"]["digest"]) for p in received) == sorted(
        [("push", tag, digest) for tag, digest in pushed.items()] + [("delete", "one", pushed["one"])]
    )
    for d in log:
        assert d["last_status"] == 200 and d["last_duration_ms"] >= 0 and d["last_error"] is None
    assert all(
        d["attempts"] >= 2
        for d in log
        if d["payload"]["target"]["tag"] in ("one", "two", "three") and d["event"] == "push"
    )


def test_a_push_acknowledged_just_before_a_crash_is_delivered_after_the_restart(own):
    api, receiver = own
    receiver.start()
    name, url = _endpoint(receiver)
    image_repo = f"acme/{repo('crash')}"
    hook = api.add_webhook("olga", url, repository=image_repo)
    with api.registry("olga", image_repo) as c:
        image = push_image(c, image_repo, "v1")
    api.server.kill()  # SIGKILL as soon as the push was acknowledged
    api.server.start()
    api.forget_tokens()
    got = wait_for(lambda: receiver.at(name), "the push after the crash")
    assert got[0].payload["target"]["digest"] == image.digest and got[0].payload["type"] == "push"
    log = wait_for(
        lambda: (log := api.deliveries("olga", hook["id"])) and log[0]["status"] == "delivered" and log,
        "the delivered status",
    )
    assert len(log) == 1
    _assert_each_event_once(receiver, name, log)
