"""Server-side tests of the web UI's sessions and CSRF protection (browser tests: test_web_browser.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import RegistryServer
from tests.web_helpers import csrf_of, post_form, sign_in

ADMIN_PASSWORD = "web-admin-pw-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    srv = RegistryServer(
        tmp_path_factory.mktemp("web") / "data",
        env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD, "DOCKYARD_GC_INTERVAL": "0"},
    ).start()
    subprocess.run(
        [sys.executable, "-m", "dockyard", "user", "add", "wendy", "--password", "wendy-pw-1",
         "--data-dir", str(srv.data_dir)],
        check=True, capture_output=True,
    )  # fmt: skip
    yield srv
    srv.stop()


def browser(server: RegistryServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)


def test_sign_in_sets_a_hardened_session_cookie_and_sign_out_ends_it(server: RegistryServer):
    with browser(server) as b:
        r = sign_in(b, "wendy", "wendy-pw-1")
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "dockyard_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        token = b.cookies["dockyard_session"]
        page = b.get("/login?next=/usage")
        assert page.status_code == 302 and page.headers["location"] == "/usage"  # already signed in
        out = post_form(b, "/usage", "/logout", {})
        assert out.status_code == 303
        # The old cookie is dead on the server, not just forgotten by this client.
        with browser(server) as replay:
            replay.cookies.set("dockyard_session", token)
            assert replay.get("/login").status_code == 200


def test_wrong_passwords_tokens_and_robots_do_not_open_a_session(server: RegistryServer):
    with browser(server) as b:
        r = sign_in(b, "wendy", "not-her-password")
        assert r.status_code == 401 and "Incorrect username or password." in r.text
        assert "dockyard_session" not in b.cookies
        assert sign_in(b, "", "").status_code == 401


def test_forms_without_the_csrf_token_or_from_another_origin_are_refused(server: RegistryServer):
    with browser(server) as b:
        sign_in(b, "wendy", "wendy-pw-1")
        assert b.post("/logout", data={}).status_code == 403  # no token
        assert b.post("/logout", data={"csrf": "forged"}).status_code == 403
        token = csrf_of(b.get("/usage").text)
        evil = b.post("/logout", data={"csrf": token}, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        assert b.post("/login", data={"username": "wendy", "password": "wendy-pw-1"},
                      headers={"Origin": "http://evil.example"}).status_code == 403  # fmt: skip
        assert b.post("/logout", data={"csrf": token}).status_code == 303  # the real form works


def test_next_only_redirects_within_the_site(server: RegistryServer):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        with browser(server) as b:
            r = b.post("/login", data={"username": "wendy", "password": "wendy-pw-1", "next": target})
            assert r.status_code == 303 and r.headers["location"] == "/", target


def test_pages_forbid_framing_and_caching(server: RegistryServer):
    with browser(server) as b:
        r = b.get("/login")
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]


def test_a_removed_users_session_ends(server: RegistryServer, tmp_path: Path):
    dockyard = [sys.executable, "-m", "dockyard"]
    subprocess.run([*dockyard, "user", "add", "gone", "--password", "gone-pw-1", "--data-dir",
                    str(server.data_dir)], check=True, capture_output=True)  # fmt: skip
    with browser(server) as b:
        sign_in(b, "gone", "gone-pw-1")
        assert "Signed in as <strong>gone</strong>" in b.get("/login?next=/x", follow_redirects=True).text
        subprocess.run([*dockyard, "user", "remove", "gone", "--data-dir", str(server.data_dir)], check=True,
                       capture_output=True)  # fmt: skip
        assert "Signed in as" not in b.get("/login").text
