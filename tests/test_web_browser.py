"""The web UI in a real browser: Playwright for Python driving Debian's Chromium against a real
``dockyard serve`` (token authentication) that skopeo has pushed images to.

Each test is a scenario a person goes through: sign in through the form, find a repository with
the search box, open a tag and read its layers, copy the pull command, create a personal access
token and log skopeo in with it, make a repository public and watch anonymous access change, see
the usage charts drawn, and do it by keyboard. The browser and the server are module-scoped (one
Chromium, one registry, one signed-in admin context); each test opens its own page, and the tests
that change something (a token, a repository's visibility) change what no other test looks at.

Full-page screenshots of the main pages go to ``test-artifacts/screenshots/`` at the repository
root (git-ignored) for a person to look at; nothing asserts on pixels.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (``./dev test``
installs Debian's ``chromium``), and the module is skipped, saying so, where it is missing.

The clipboard: headless Chromium grants ``clipboard-read``/``clipboard-write`` on
http://127.0.0.1 (a loopback origin is a secure context), so the copy test reads back what
the "Copy" button put there with ``navigator.clipboard.readText()`` and also checks the button's
"Copied" feedback and the read-only field it copies from.
"""

from __future__ import annotations

import random
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard.registry.units import format_size
from tests import images
from tests.clients import require, run
from tests.oci import assert_no_traceback
from tests.server import RegistryServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
ADMIN_PASSWORD = "browser-admin-pw-1"
TIMEOUT_MS = 15_000
ADMIN_PAGES = ("/admin", "/admin/tokens", "/admin/password", "/admin/users", "/admin/orgs", "/admin/policies",
               "/admin/quotas", "/admin/webhooks", "/admin/audit")  # fmt: skip

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's Chromium (/usr/bin/chromium) is not installed: `./dev test` or `apt-get install chromium`",
    ),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
Browser, BrowserContext, Page, expect = sync_api.Browser, sync_api.BrowserContext, sync_api.Page, sync_api.expect

# The Dockerfile the main image pretends to come from: (instruction, makes a layer of this many bytes of files).
DOCKERFILE = [
    ("ADD alpine-minirootfs.tar.gz / # buildkit", 3000),
    ('ENV APP_HOME="/srv/app"', 0),
    ("RUN /bin/sh -c apk add --no-cache curl ca-certificates # buildkit", 9000),
    ("COPY app /srv/app # buildkit", 20000),
    ('ENTRYPOINT ["/srv/app/run"]', 0),
]


@dataclass
class Env:
    """The registry, what was pushed to it, and skopeo confined to a home of its own."""

    server: RegistryServer
    work: Path
    app: images.Image  # acme/web-app:1.0 and :latest
    created_by: list[str]  # the Dockerfile instruction of each of its layers, in order

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.host

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        home = self.work / "home"
        env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "DOCKER_CONFIG": str(home / "docker"),
            "REGISTRY_AUTH_FILE": str(home / "auth.json"),  # no credentials of the machine's
        }
        return run([require("skopeo"), "--insecure-policy", *args], env=env, registry=self.server, check=check)

    def push(self, target: images.Image | images.ImageIndex, name: str, *tags: str) -> None:
        layout = images.write_layout(self.work / f"layout-{secrets.token_hex(6)}", tags[0], target)
        for tag in tags:
            self.skopeo(
                "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
                "--dest-creds", f"admin:{ADMIN_PASSWORD}", f"oci:{layout}:{tags[0]}", f"docker://{self.host}/{name}:{tag}",
            )  # fmt: skip

    def inspect(self, reference: str, *creds: str) -> subprocess.CompletedProcess[str]:
        return self.skopeo("inspect", "--tls-verify=false", *creds, f"docker://{self.host}/{reference}", check=False)


def dockerfile_image(rng: random.Random) -> tuple[images.Image, list[str]]:
    """An image whose config history reads like a Dockerfile, empty layers (ENV, ENTRYPOINT)
    between the real ones, as ``docker build`` writes it."""
    layers = [images.random_layer(rng, sizes=[size]) for _, size in DOCKERFILE if size]
    history = [
        {"created": images.EPOCH, "created_by": line, **({} if size else {"empty_layer": True})}
        for line, size in DOCKERFILE
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": images.EPOCH,
        "config": {
            "Entrypoint": ["/srv/app/run"],
            "Env": ["PATH=/usr/bin:/bin", "APP_HOME=/srv/app"],
            "Labels": {"org.opencontainers.image.title": "web app"},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        "history": history,
    }
    config_blob = images.Blob(images.OCI_CONFIG, images.to_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": images.OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer, _ in layers],
    }
    image = images.Image(
        config_blob, [layer for layer, _ in layers], images.Blob(images.OCI_MANIFEST, images.to_json(manifest)),
        {"architecture": "amd64", "os": "linux"},
    )  # fmt: skip
    return image, [line for line, size in DOCKERFILE if size]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The registry with: acme/web-app (1.0, latest; pulled once), acme/worker, acme/docs-site
    (made public by one test), tools/builder (a two-platform index). All private to begin with."""
    work = tmp_path_factory.mktemp("web-browser")
    server = RegistryServer(
        work / "data",
        env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD, "DOCKYARD_GC_INTERVAL": "0"},
    ).start()
    try:
        rng = random.Random(20240501)
        app, created_by = dockerfile_image(rng)
        found = Env(server, work, app, created_by)
        found.push(app, "acme/web-app", "1.0", "latest")
        found.push(images.random_image(rng, layers=2), "acme/worker", "v1")
        found.push(images.random_image(rng, layers=1), "acme/docs-site", "v1")
        found.push(images.random_index(rng), "tools/builder", "2.0")
        # One pull, so the usage chart has pulls as well as pushes.
        found.skopeo(
            "copy", "--src-tls-verify=false", "--src-creds", f"admin:{ADMIN_PASSWORD}",
            f"docker://{found.host}/acme/web-app:1.0", f"oci:{work / 'pulled'}:x",
        )  # fmt: skip
        yield found
    finally:
        server.stop()
    assert_no_traceback(server.log())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_context(browser: Browser, env: Env) -> BrowserContext:
    context = browser.new_context(base_url=env.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    return context


def sign_in_with_form(page: Page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.fixture(scope="module")
def admin(browser: Browser, env: Env) -> Iterator[BrowserContext]:
    """The site admin, signed in through the form once for the module (each sign-in hashes a password)."""
    context = new_context(browser, env)
    page = context.new_page()
    sign_in_with_form(page, "admin", ADMIN_PASSWORD)
    expect(page.locator("header .who")).to_contain_text("Signed in as admin")
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(admin: BrowserContext) -> Iterator[Page]:
    """A fresh tab in the admin's context."""
    tab = admin.new_page()
    yield tab
    tab.close()


@pytest.fixture
def anonymous(browser: Browser, env: Env) -> Iterator[Page]:
    """A tab in a context of its own: no session cookie."""
    context = new_context(browser, env)
    yield context.new_page()
    context.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# -- signing in ---------------------------------------------------------------------------------


def test_sign_in_through_the_form(anonymous: Page):
    page = anonymous
    page.goto("/")
    expect(page).to_have_title("Repositories · dockyard")
    expect(page.get_by_role("link", name="acme/web-app")).to_have_count(0)  # private
    page.get_by_role("link", name="Sign in").first.click()
    expect(page).to_have_title("Sign in · dockyard")
    screenshot(page, "sign-in")

    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("main .error[role=alert]")).to_have_text("Incorrect username or password.")
    expect(page.get_by_label("Username")).to_have_value("admin")

    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("header .who")).to_have_text(re.compile(r"Signed in as\s+admin\s+\(site admin\)"))
    names = page.locator("table.repositories a.repo-name").all_inner_texts()
    assert {"acme/web-app", "acme/worker", "acme/docs-site", "tools/builder"} <= set(names)
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["dockyard_session"]["httpOnly"]

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in").first).to_be_visible()
    expect(page.get_by_role("link", name="acme/web-app")).to_have_count(0)


# -- browsing -----------------------------------------------------------------------------------


def test_find_a_repository_open_a_tag_and_see_its_layers(page: Page, env: Env):
    page.goto("/")
    screenshot(page, "repository-list")
    page.get_by_label("Name contains").fill("web")
    page.get_by_label("Name contains").press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=web"))
    expect(page.locator("table.repositories a.repo-name")).to_have_text(["acme/web-app"])

    page.get_by_role("link", name="acme/web-app", exact=True).click()
    expect(page).to_have_title("acme/web-app · Repositories · dockyard")
    expect(page.locator("h1")).to_contain_text("acme/web-app")
    expect(page.locator("h1 .badge")).to_have_text("private")
    rows = page.locator("table.tags tbody tr")
    expect(rows).to_have_count(2)
    assert sorted(page.locator("table.tags a.tag-name").all_inner_texts()) == ["1.0", "latest"]
    row = rows.filter(has=page.get_by_role("link", name="1.0", exact=True))
    expect(row).to_contain_text("linux/amd64")
    expect(row.locator("code")).to_have_text(re.compile(r"sha256:[0-9a-f]{6,}"))
    screenshot(page, "repository")

    row.get_by_role("link", name="1.0", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(f"/r/acme/web-app/-/manifests/{env.app.digest}") + "$"))
    expect(page).to_have_title(re.compile(r"^acme/web-app@sha256:[0-9a-f]+.* · Repositories · dockyard$"))
    expect(page.locator("code.digest")).to_have_text(env.app.digest)
    layers = page.locator("table.layers tbody tr")
    expect(layers).to_have_count(len(env.app.layers))
    expect(layers.locator("code.created-by")).to_have_text(env.created_by)
    for i, layer in enumerate(env.app.layers):
        expect(layers.nth(i).locator("td.num").last).to_have_text(format_size(layer.size))
    expect(page.locator("section", has=page.locator("#env-heading"))).to_contain_text("APP_HOME")
    expect(page.locator("section", has=page.locator("#labels-heading"))).to_contain_text("web app")
    expect(page.locator("section", has=page.locator("#config-heading"))).to_contain_text('["/srv/app/run"]')
    screenshot(page, "manifest")


def test_a_multi_platform_tag_lists_its_platforms(page: Page):
    page.goto("/r/tools/builder")
    page.get_by_role("link", name="2.0", exact=True).click()
    expect(page.locator("table.platforms tbody tr")).to_have_count(2)
    expect(page.locator("table.platforms")).to_contain_text("linux/amd64")
    expect(page.locator("table.platforms")).to_contain_text("linux/arm64")


def test_copy_the_pull_command(page: Page, env: Env):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=env.url)
    page.goto("/r/acme/web-app")
    command = f"docker pull {env.host}/acme/web-app:latest"
    field = page.get_by_label("docker", exact=True)
    expect(field).to_have_value(command)
    expect(field).to_have_attribute("readonly", "")
    # Found by what it copies from, not by its name: the name changes to "Copied".
    button = page.locator(f"button[aria-controls={field.get_attribute('id')}]")
    expect(button).to_have_accessible_name("Copy")
    button.click()
    expect(button).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == command
    expect(button).to_have_text("Copy", timeout=5000)  # the feedback goes away

    # Each tag's own button copies its own command.
    page.get_by_role("button", name="Copy the pull command for 1.0").click()
    assert page.evaluate("navigator.clipboard.readText()") == f"docker pull {env.host}/acme/web-app:1.0"


# -- personal access tokens ---------------------------------------------------------------------


def test_create_a_token_and_use_it_with_skopeo(page: Page, env: Env):
    name = f"ci-{secrets.token_hex(3)}"
    page.goto("/admin/tokens")
    expect(page).to_have_title("Your access tokens · dockyard")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Scope").select_option("read")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator(".secret")).to_have_count(1)
    secret = page.locator(".secret input").input_value()
    assert len(secret) >= 20 and secret != name
    expect(page.locator("table")).to_contain_text(name)
    screenshot(page, "admin-tokens")

    # skopeo logs in with the user name and the token as its password, and reads a private repository.
    inspected = env.inspect("acme/worker:v1", "--creds", f"admin:{secret}")
    assert inspected.returncode == 0, inspected.stderr
    assert '"Architecture": "amd64"' in inspected.stdout
    wrong = env.inspect("acme/worker:v1", "--creds", f"admin:{secret[:-2]}xx")
    assert wrong.returncode != 0

    # Reloading the page (a fresh GET, as a bookmark or the nav link does) never shows it again.
    page.goto("/admin/tokens")
    expect(page.locator(".secret")).to_have_count(0)
    expect(page.locator("table")).to_contain_text(name)
    assert secret not in page.content()
    # Nor going back in the history to the page that showed it, and reloading there: pages are
    # sent with Cache-Control: no-store, so the browser asks the server again, which never
    # renders a secret except in its answer to the form that created it.
    page.go_back()
    assert secret not in page.content()
    page.reload()
    assert secret not in page.content()
    expect(page.locator(".secret")).to_have_count(0)


# -- visibility ---------------------------------------------------------------------------------


def test_make_a_repository_public_and_anonymous_access_changes(page: Page, anonymous: Page, env: Env):
    name = "acme/docs-site"
    response = anonymous.goto(f"/r/{name}")
    assert response is not None and response.status == 404
    expect(anonymous).to_have_title("Not found · dockyard")
    assert name not in anonymous.locator("main").inner_text()  # (only the sign-in link's ?next= has it)
    before = env.inspect(f"{name}:v1", "--no-creds")
    assert before.returncode != 0

    page.goto(f"/r/{name}")
    expect(page.locator("h1 .badge")).to_have_text("private")
    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Make public").click()
    expect(page.locator("main .flash")).to_contain_text("now public")
    expect(page.locator("h1 .badge")).to_have_text("public")
    assert dialogs and "public" in dialogs[0] and name in dialogs[0]

    response = anonymous.goto(f"/r/{name}")
    assert response is not None and response.status == 200
    expect(anonymous).to_have_title(f"{name} · Repositories · dockyard")
    expect(anonymous.locator("h1 .badge")).to_have_text("public")
    expect(anonymous.get_by_role("button", name="Make private")).to_have_count(0)  # no settings for the public
    anonymous.goto("/")
    expect(anonymous.locator("table.repositories a.repo-name")).to_have_text([name])
    after = env.inspect(f"{name}:v1", "--no-creds")
    assert after.returncode == 0, after.stderr


def test_dismissing_the_confirmation_changes_nothing(page: Page):
    page.goto("/r/acme/worker")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Make public").click()
    page.goto("/r/acme/worker")
    expect(page.locator("h1 .badge")).to_have_text("private")


# -- usage --------------------------------------------------------------------------------------


def bars_drawn(page: Page, selector: str) -> list[dict]:
    """Bounding boxes of the bars the browser laid out under ``selector``, with some area."""
    boxes = [bar.bounding_box() for bar in page.locator(selector).all()]
    return [b for b in boxes if b and b["width"] > 0 and b["height"] > 0]


def test_the_usage_charts_render(page: Page):
    # Pushes and pulls reach the daily figures through the usage recorder's batched flush.
    deadline = time.monotonic() + 15
    while True:
        page.goto("/usage")
        pulls, pushes = bars_drawn(page, "svg.daily .pulls rect.bar"), bars_drawn(page, "svg.daily .pushes rect.bar")
        if (pulls and pushes) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(page).to_have_title("Usage · dockyard")
    assert pulls and pushes, "no pull or push bars with an area in the daily chart"
    daily = page.locator("svg.daily").bounding_box()
    assert daily and daily["width"] > 300 and daily["height"] > 100

    storage = page.locator("svg.storage")
    expect(storage).to_be_visible()
    box = storage.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 50
    assert len(bars_drawn(page, "svg.storage g.row rect.bar:not(.shared)")) >= 4  # one per repository
    expect(storage.locator("g.row text.label")).to_contain_text(["acme/web-app"])
    expect(page.locator("svg.daily title").first).not_to_be_empty()
    screenshot(page, "usage")


# -- keyboard and titles ------------------------------------------------------------------------


def test_keyboard_skip_link_and_sign_in(anonymous: Page):
    page = anonymous
    page.goto("/")
    page.keyboard.press("Tab")
    focused = page.locator(":focus")
    expect(focused).to_have_text("Skip to content")
    box = focused.bounding_box()
    assert box and box["x"] >= 0 and box["y"] >= 0, "the focused skip link is off screen"
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))
    expect(page.locator("main#main")).to_be_focused()

    # Tab along the navigation to "Sign in", then fill the form and submit it without a mouse.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Sign in":
            break
    else:
        pytest.fail("Tab never reached the Sign in link")
    page.keyboard.press("Enter")
    expect(page).to_have_title("Sign in · dockyard")
    expect(page.get_by_label("Username")).to_be_focused()  # autofocus
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("header .who")).to_contain_text("Signed in as admin")


def test_every_page_has_a_meaningful_title(page: Page, anonymous: Page, env: Env):
    expected = {
        "/": "Repositories · dockyard",
        "/?q=acme": "Repositories · dockyard",
        "/r/acme/web-app": "acme/web-app · Repositories · dockyard",
        "/r/tools/builder": "tools/builder · Repositories · dockyard",
        f"/r/acme/web-app/-/manifests/{env.app.digest}": re.compile(
            rf"^acme/web-app@{re.escape(env.app.digest[:13])}\S* · Repositories · dockyard$"
        ),
        "/usage": "Usage · dockyard",
        "/admin": "Administration · dockyard",
        "/admin/tokens": "Your access tokens · dockyard",
        "/r/acme/no-such-repository": "Not found · dockyard",
    }
    titles = {}
    for path, title in expected.items():
        page.goto(path)
        expect(page).to_have_title(title)
        titles[path] = page.title()
    for path in ADMIN_PAGES[2:]:
        page.goto(path)
        titles[path] = page.title()
        assert re.fullmatch(r"\S.* · dockyard", titles[path]) and titles[path] != "Not found · dockyard", path
        assert page.locator("h1").count() == 1, path
    # Different pages, different titles (a filtered list is still the list).
    titles.pop("/?q=acme")
    assert len(set(titles.values())) == len(titles), titles

    # Signed out, an administration page leads to the sign-in form, and back after it.
    anonymous.goto("/admin/tokens")
    expect(anonymous).to_have_title("Sign in · dockyard")
    expect(anonymous).to_have_url(re.compile(r"/login\?next=(/|%2F)admin(/|%2F)tokens$"))


def test_no_page_logs_a_script_error(page: Page, env: Env):
    """The Content-Security-Policy forbids inline scripts and styles: a page that breaks it shows
    up as a console error, which a server-side test cannot see."""
    problems: list[str] = []

    def console(message) -> None:
        # Chromium asks for /favicon.ico by itself; the UI has none, and a 404 for it is no error of a page's.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            problems.append(f"{page.url}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"{page.url}: {error}"))
    for path in ("/", "/r/acme/web-app", f"/r/acme/web-app/-/manifests/{env.app.digest}", "/usage", *ADMIN_PAGES):
        page.goto(path)
        page.wait_for_load_state("load")
    assert not problems, problems
