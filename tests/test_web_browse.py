"""Server-side tests of the browsing pages: the repository list, a repository's tags, a manifest's
layers and referrers, and the changes made there (description, visibility, deleting a tag).

A real ``dockyard serve`` with token authentication; images go in through the registry API as a
client pushes them (tests/oci.py, tests/images.py), pages are read and forms posted with httpx
the way a browser does (tests/web_helpers.py). The browser tests (Playwright) are elsewhere.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html import unescape
from urllib.parse import quote

import httpx
import pytest

from tests import images, oci
from tests.oci import assert_no_traceback
from tests.server import RegistryServer
from tests.web_helpers import csrf_of, post_form, sign_in

ADMIN_PASSWORD = "browse-admin-pw-1"
PASSWORDS = {"admin": ADMIN_PASSWORD, "olga": "olga-pw-12345", "tom": "tom-pw-12345"}
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"
NOT_FOUND_TITLE = "<title>Not found · dockyard</title>"


@dataclass
class Env:
    server: RegistryServer
    admin_token: str

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=60, **kw)

    def registry(self, *names: str, actions: str = "pull,push,delete", user: str = "admin") -> httpx.Client:
        """A registry client holding a token for ``names`` (at most 32), as docker gets one."""
        params = [("service", "dockyard"), *(("scope", f"repository:{name}:{actions}") for name in names)]
        r = httpx.get(f"{self.url}/token", params=params, auth=(user, PASSWORDS[user]))
        assert r.status_code == 200, r.text
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {r.json()['token']}"}, timeout=60)

    @contextmanager
    def browser(self, user: str | None = None) -> Iterator[httpx.Client]:
        """A browser's cookie jar, signed in as ``user`` (None: anonymous)."""
        with httpx.Client(base_url=self.url, timeout=60, follow_redirects=False) as client:
            if user is not None:
                assert sign_in(client, user, PASSWORDS[user]).status_code == 303
            yield client


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = RegistryServer(
        tmp_path_factory.mktemp("web-browse") / "data",
        env={"DOCKYARD_AUTH": "token", "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD, "DOCKYARD_GC_INTERVAL": "0"},
    ).start()
    token = httpx.get(f"{server.url}/token", params={"service": "dockyard"}, auth=("admin", ADMIN_PASSWORD))
    found = Env(server, token.json()["token"])
    for name in ("olga", "tom"):
        assert found.api("POST", "/users", json={"name": name, "password": PASSWORDS[name]}).status_code == 201
    yield found
    server.stop()
    assert_no_traceback(server.log())


# -- images -------------------------------------------------------------------------------------

LABEL_TITLE = "<script>alert('label')</script>"
ANNOTATION = '<i>annotated</i> & "quoted"'


def rich_image(rng: random.Random) -> images.Image:
    """An image whose config has what the manifest page shows: history with empty layers between
    the real ones, labels, environment, entrypoint, ports, with HTML special characters."""
    layers = [images.random_layer(rng, files=2, max_size=2048) for _ in range(2)]
    config = {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "created": "2024-05-01T10:00:00Z",
        "config": {
            "Entrypoint": ["/bin/app", "--flag"],
            "Cmd": ["serve"],
            "Env": ["PATH=/usr/bin", "GREETING=<b>hello</b> & bye"],
            "WorkingDir": "/srv/app",
            "User": "appuser",
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": {"org.opencontainers.image.title": LABEL_TITLE, "maintainer": 'Ann & "Bob"'},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
        "history": [
            {"created": images.EPOCH, "created_by": "ADD rootfs.tar / # first-layer"},
            {"created": images.EPOCH, "created_by": "ENV GREETING=nolayer", "empty_layer": True},
            {"created": images.EPOCH, "created_by": 'RUN /bin/sh -c echo "<img src=x onerror=alert(1)>" # second'},
            {"created": images.EPOCH, "created_by": 'CMD ["serve"]', "empty_layer": True},
        ],
    }
    config_blob = images.Blob(images.OCI_CONFIG, images.to_json(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": images.OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer, _ in layers],
        "annotations": {"org.example.note": ANNOTATION},
    }
    blob = images.Blob(images.OCI_MANIFEST, images.to_json(manifest))
    return images.Image(config_blob, [layer for layer, _ in layers], blob, {"architecture": "arm64", "os": "linux"})


def push_tags(env: Env, name: str, image: images.Image, *tags: str) -> str:
    with env.registry(name) as c:
        digest = images.push_image(c, name, image, tags[0])
        for tag in tags[1:]:
            oci.push_manifest(c, name, tag, image.manifest.data, image.manifest.media_type)
    return digest


def push_index(env: Env, name: str, rng: random.Random, tag: str) -> images.ImageIndex:
    index = images.random_index(rng)
    with env.registry(name) as c:
        for child in index.images:
            images.push_image(c, name, child)
        oci.push_manifest(c, name, tag, index.manifest.data, images.OCI_INDEX)
    return index


def push_small(env: Env, name: str, tag: str = "v1", layer_size: int = 512) -> str:
    with env.registry(name) as c:
        return oci.push_image(c, name, tag, layers=1, layer_size=layer_size).digest


@pytest.fixture(scope="module")
def app(env: Env) -> dict[str, str]:
    """``acme/app``: a rich image (latest, v1, dev), a multi-arch index (multi) and referrers."""
    rng = random.Random(5)
    name = "acme/app"
    image = rich_image(rng)
    digest = push_tags(env, name, image, "latest", "v1", "dev")
    index = push_index(env, name, rng, "multi")
    subject = {"mediaType": images.OCI_MANIFEST, "digest": digest, "size": image.manifest.size}
    with env.registry(name) as c:
        signature = oci.make_artifact(SIGNATURE, subject, annotations={"dev.cosign.note": ANNOTATION})
        oci.push_image(c, name, image=signature)
        sbom = oci.make_artifact(SBOM, subject, payload=b'{"spdxVersion": "SPDX-2.3"}')
        oci.push_image(c, name, image=sbom)
    return {"name": name, "digest": digest, "index": index.digest, "signature": signature.digest, "sbom": sbom.digest}


def rows_of(html: str, table_class: str) -> list[str]:
    """The body rows of the table with class ``table_class``, as HTML fragments."""
    found = re.search(rf'<table class="{table_class}">(.*?)</table>', html, re.S)
    assert found, f"no table {table_class}"
    body = found.group(1).split("<tbody>", 1)[1]
    return re.findall(r"<tr>(.*?)</tr>", body, re.S)


def without(html: str, name: str) -> str:
    """The page with every mention of ``name`` (plain or URL-encoded) blanked out."""
    return html.replace(name, "NAME").replace(quote(name, safe=""), "NAME")


def listed(html: str) -> list[str]:
    """Repository names in the order the list shows them."""
    return [unescape(n) for n in re.findall(r'class="repo-name">([^<]*)</a>', html)]


# -- the list -----------------------------------------------------------------------------------


def test_the_list_shows_only_readable_repositories_with_their_badges(env: Env, app: dict[str, str]):
    push_small(env, "olga/private-one")
    push_small(env, "olga/public-one")
    with env.browser("admin") as b:
        post_form(b, "/r/olga/public-one", "/r/olga/public-one/-/visibility", {"visibility": "public"})
        page = b.get("/")
        assert page.status_code == 200 and "<title>Repositories · dockyard</title>" in page.text
        assert {"acme/app", "olga/private-one", "olga/public-one"} <= set(listed(page.text))
        row = next(r for r in rows_of(page.text, "repositories") if ">olga/public-one<" in r)
        assert '<span class="badge public">public</span>' in row
        row = next(r for r in rows_of(page.text, "repositories") if ">acme/app<" in r)
        assert '<span class="badge private">private</span>' in row
        assert re.search(r'<td class="num">[0-9.]+ (kB|MB)</td>', row), row  # a size, and the tag count below
        assert '<td class="num">4</td>' in row  # latest, v1, dev, multi
    with env.browser() as anonymous:
        page = anonymous.get("/")
        assert "olga/public-one" in listed(page.text)
        assert "olga/private-one" not in page.text and "acme/app" not in page.text
        assert "only public repositories are listed" in page.text
    with env.browser("olga") as olga:  # her own namespace, and public ones; not acme's
        names = listed(olga.get("/").text)
        assert {"olga/private-one", "olga/public-one"} <= set(names) and "acme/app" not in names
    with env.browser("tom") as tom:
        names = listed(tom.get("/").text)
        assert "olga/public-one" in names and "olga/private-one" not in names


def test_search_namespace_filter_sort_and_pages(env: Env):
    for i, size in enumerate((100, 30_000, 5_000)):
        push_small(env, f"sortns/r{i}", layer_size=size)
        time.sleep(0.01)  # distinct push times
    with env.browser("admin") as b:
        assert listed(b.get("/", params={"namespace": "sortns"}).text) == ["sortns/r0", "sortns/r1", "sortns/r2"]
        by_size = listed(b.get("/", params={"namespace": "sortns", "sort": "size"}).text)
        assert by_size == ["sortns/r1", "sortns/r2", "sortns/r0"]
        by_push = listed(b.get("/", params={"namespace": "sortns", "sort": "push"}).text)
        assert by_push == ["sortns/r2", "sortns/r1", "sortns/r0"]
        assert listed(b.get("/", params={"q": "SORTNS/R1"}).text) == ["sortns/r1"]
        page = b.get("/", params={"namespace": "sortns"})
        assert '<option value="sortns" selected>sortns</option>' in page.text
        empty = b.get("/", params={"q": "no-such-thing-anywhere"})
        assert "No repositories match" in empty.text and 'href="/">Show all repositories' in empty.text
        # Bad parameters are ignored, not errors.
        assert b.get("/", params={"sort": "bogus", "page": "x"}).status_code == 200

    names = [f"paged/p{i:02d}" for i in range(52)]
    for chunk in (names[:26], names[26:]):  # one token (one password check) per 26 repositories
        with env.registry(*chunk) as c:
            for name in chunk:
                oci.push_image(c, name, "v1", layers=1, layer_size=64)
    with env.browser("admin") as b:
        first = b.get("/", params={"namespace": "paged"})
        assert len(listed(first.text)) == 50 and "Page 1 of 2" in first.text
        assert 'href="/?namespace=paged&amp;page=2" rel="next"' in first.text
        second = b.get("/", params={"namespace": "paged", "page": "2"})
        assert listed(second.text) == ["paged/p50", "paged/p51"] and 'rel="prev"' in second.text
        assert listed(b.get("/", params={"namespace": "paged", "page": "99"}).text) == ["paged/p50", "paged/p51"]


def test_user_input_in_the_list_is_escaped(env: Env):
    with env.browser() as b:
        page = b.get("/", params={"q": '<script>alert("q")</script>', "namespace": "<b>ns</b>"})
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<b>ns</b>" not in page.text
        assert "&lt;script&gt;alert(&#34;q&#34;)&lt;/script&gt;" in page.text


# -- a repository -------------------------------------------------------------------------------


def test_the_repository_page_lists_tags_and_pull_commands(env: Env, app: dict[str, str]):
    with env.browser("admin") as b:
        page = b.get("/r/acme/app")
        assert page.status_code == 200
        assert "<title>acme/app · Repositories · dockyard</title>" in page.text
        host = env.server.host
        assert f'value="docker pull {host}/acme/app:latest"' in page.text
        assert f'data-copy="podman pull --tls-verify=false {host}/acme/app:latest"' in page.text
        assert 'aria-controls="pull-docker"' in page.text
        rows = {re.search(r'class="tag-name">([^<]+)<', r).group(1): r for r in rows_of(page.text, "tags")}
        assert set(rows) == {"latest", "v1", "dev", "multi"}
        latest = rows["latest"]
        assert f'href="/r/acme/app/-/manifests/{app["digest"]}"' in latest
        assert app["digest"][:19] in latest and "linux/arm64/v8" in latest
        assert f'data-copy="docker pull {host}/acme/app:v1"' in rows["v1"]
        assert "linux/amd64, linux/arm64/v8" in rows["multi"] and "(2 platforms)" in rows["multi"]
        assert "never" in latest  # not pulled yet
        # An index's size adds up its children: bigger than the image's.
        assert "kB" in rows["multi"] or "MB" in rows["multi"]
        # Admin controls for the site admin.
        assert "Save description" in page.text and "Make public" in page.text
        assert 'action="/r/acme/app/-/tags/dev/delete"' in page.text and "data-confirm=" in page.text
        assert "No description yet." in page.text

        filtered = b.get("/r/acme/app", params={"tag": "mul"})
        assert [re.search(r'class="tag-name">([^<]+)<', r).group(1) for r in rows_of(filtered.text, "tags")] == [
            "multi"
        ]
        escaped = b.get("/r/acme/app", params={"tag": "<svg onload=alert(1)>", "deleted": "<b>x</b>"})
        assert "<svg onload" not in escaped.text and "&lt;svg onload=alert(1)&gt;" in escaped.text
        assert "<b>x</b>" not in escaped.text and "was deleted" not in escaped.text


def test_a_bookmarkable_tag_address_leads_to_its_manifest(env: Env, app: dict[str, str]):
    with env.browser("admin") as b:
        r = b.get("/r/acme/app/-/tags/v1")
        assert r.status_code == 302 and r.headers["location"] == f"/r/acme/app/-/manifests/{app['digest']}"
        assert b.get("/r/acme/app/-/tags/nope").status_code == 404


def test_an_empty_repository_says_how_to_push(env: Env):
    name = "olga/emptied"
    push_small(env, name, "only")
    with env.registry(name) as c:
        assert c.delete(f"/v2/{name}/manifests/only").status_code == 202
    with env.browser("olga") as b:
        page = b.get(f"/r/{name}")
        assert f"No tags yet — push one with <code>docker push {env.server.host}/{name}:TAG</code>" in page.text


def test_a_private_repository_is_not_found_like_a_missing_one(env: Env, app: dict[str, str]):
    push_small(env, "olga/hidden")
    digest = app["digest"]
    pairs = [
        ("olga/hidden", "olga/never-pushed", "/r/{}"),
        ("acme/app", "acme/nothing", "/r/{}/-/manifests/" + digest),
        ("acme/app", "acme/nothing", "/r/{}/-/tags/v1"),
    ]
    with env.browser() as anonymous, env.browser("tom") as tom:
        for client in (anonymous, tom):
            for hidden_name, missing_name, path in pairs:
                hidden, missing = client.get(path.format(hidden_name)), client.get(path.format(missing_name))
                assert hidden.status_code == missing.status_code == 404
                assert NOT_FOUND_TITLE in hidden.text
                # Identical but for the address itself (in the sign-in link's ?next=).
                assert without(hidden.text, hidden_name) == without(missing.text, missing_name)
    with env.browser("olga") as olga:
        assert olga.get("/r/olga/hidden").status_code == 200  # her own namespace
    with env.browser() as b:
        for path in ("/r/UPPER/case", "/r/a/-/b", "/r/" + "x" * 300, "/r/acme/app/-/manifests/sha256:zz"):
            assert b.get(path).status_code == 404, path


# -- a manifest ---------------------------------------------------------------------------------


def test_the_manifest_page_shows_layers_config_labels_and_referrers(env: Env, app: dict[str, str]):
    with env.browser("admin") as b:
        page = b.get(f"/r/acme/app/-/manifests/{app['digest']}")
        assert page.status_code == 200, page.text
        html = page.text
        short = app["digest"][:19]
        assert f"<title>acme/app@{short} · Repositories · dockyard</title>" in html
        layers = rows_of(html, "layers")
        assert len(layers) == 2
        # History pairs with layers skipping empty_layer entries (ENV, CMD).
        assert "ADD rootfs.tar / # first-layer" in layers[0]
        assert "RUN /bin/sh -c echo &#34;&lt;img src=x onerror=alert(1)&gt;&#34; # second" in layers[1]
        assert "ENV GREETING=nolayer" not in html and "<img src=x" not in html
        assert re.search(r'<td class="num">[0-9.]+ (B|kB)</td>', layers[0])
        for text in ("linux/arm64/v8", "/srv/app", "appuser", "8080/tcp", "2024-05-01T10:00:00Z",
                     "[&#34;/bin/app&#34;, &#34;--flag&#34;]", "[&#34;serve&#34;]"):  # fmt: skip
            assert text in html, text
        # Labels, environment and annotations: escaped, never markup.
        assert "&lt;script&gt;alert(&#39;label&#39;)&lt;/script&gt;" in html and "<script>alert" not in html
        assert "Ann &amp; &#34;Bob&#34;" in html
        assert "<code>GREETING</code></dt><dd><code>&lt;b&gt;hello&lt;/b&gt; &amp; bye</code>" in html
        assert "&lt;i&gt;annotated&lt;/i&gt; &amp; &#34;quoted&#34;" in html and "<i>annotated" not in html
        for tag in ("latest", "v1", "dev"):
            assert f'<span class="tag-chip">{tag}</span>' in html
        referrers = rows_of(html, "referrers")
        assert len(referrers) == 2
        signature = next(r for r in referrers if SIGNATURE in r)
        assert f'href="/r/acme/app/-/manifests/{app["signature"]}"' in signature
        assert "dev.cosign.note" in signature and "&lt;i&gt;annotated&lt;/i&gt;" in signature
        assert any(SBOM in r for r in referrers)
        assert f'value="docker pull {env.server.host}/acme/app@{app["digest"]}"' in html

        artifact = b.get(f"/r/acme/app/-/manifests/{app['signature']}").text
        assert "Artifact" in artifact and SIGNATURE in artifact
        assert f'href="/r/acme/app/-/manifests/{app["digest"]}"' in artifact  # its subject
        assert "Nothing refers to this manifest." in artifact


def test_the_index_page_lists_its_platforms_with_links(env: Env, app: dict[str, str]):
    with env.browser("admin") as b:
        html = b.get(f"/r/acme/app/-/manifests/{app['index']}").text
        assert "Multi-platform image index" in html
        platforms = rows_of(html, "platforms")
        assert [re.search(r"<td>([^<]+)</td>", r).group(1) for r in platforms] == ["linux/amd64", "linux/arm64/v8"]
        child = re.search(r'href="(/r/acme/app/-/manifests/sha256:[0-9a-f]{64})"', platforms[1]).group(1)
        child_page = b.get(child)
        assert child_page.status_code == 200 and "test layer 0" in child_page.text  # images.py's history
        assert b.get(f"/r/acme/app/-/manifests/sha256:{'0' * 64}").status_code == 404


# -- changes ------------------------------------------------------------------------------------


def _audit(
    env: Env, repository: str, action: str, count: int = 1, until: Callable[[list[dict]], bool] | None = None
) -> list[dict]:
    """The audit events of ``repository``, newest first, once there are ``count`` of them (and
    ``until`` holds for them: other events of the repository may have been written first)."""
    deadline = time.monotonic() + 10
    while True:  # the audit log is written in batches, every second
        events = env.api("GET", "/audit", params={"repository": repository, "action": action}).json()["events"]
        done = len(events) >= count and (until is None or until(events))
        if done or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_the_description_is_markdown_rendered_safely(env: Env):
    name = "olga/described"
    push_small(env, name)
    description = (
        "# Fast <em>app</em>\n\nSome **bold** text.\n\n<script>alert(1)</script>\n\n"
        "[click](javascript:alert(1)) [ok](https://example.com/docs)\n"
    )
    with env.browser("olga") as b:
        r = post_form(b, f"/r/{name}", f"/r/{name}/-/description", {"description": description})
        assert r.status_code == 303 and r.headers["location"] == f"/r/{name}?saved=description"
        page = b.get(r.headers["location"])
        assert "The description was saved." in page.text
        html = page.text
        assert "<strong>bold</strong>" in html and 'href="https://example.com/docs"' in html
        assert "<script>alert(1)</script>" not in html and not re.search(r"href=.?javascript", html, re.I)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text
        assert "<em>app</em>" not in html
        # The list shows the first line, as text.
        listing = b.get("/", params={"q": "described"}).text
        assert "Fast &lt;em&gt;app&lt;/em&gt;" in listing
    events = _audit(env, name, "admin")
    assert events and events[0]["actor"] == "olga" and "description" in events[0]["detail"]
    with env.browser("olga") as b:  # clearing it
        post_form(b, f"/r/{name}", f"/r/{name}/-/description", {"description": "  \r\n "})
        assert "No description yet." in b.get(f"/r/{name}").text


def test_visibility_changes_what_anonymous_clients_may_pull(env: Env):
    name = "olga/flip"
    push_small(env, name, "v1")

    def anonymous_pull() -> int:
        r = httpx.get(f"{env.url}/token", params={"service": "dockyard", "scope": f"repository:{name}:pull"})
        headers = {"Authorization": f"Bearer {r.json()['token']}", "Accept": oci.OCI_MANIFEST}
        return httpx.get(f"{env.url}/v2/{name}/manifests/v1", headers=headers).status_code

    with env.browser() as anonymous:
        assert anonymous.get(f"/r/{name}").status_code == 404 and anonymous_pull() in (401, 403)
        with env.browser("olga") as olga:
            page = olga.get(f"/r/{name}").text
            assert 'data-confirm="Make olga/flip public?' in page
            r = post_form(olga, f"/r/{name}", f"/r/{name}/-/visibility", {"visibility": "public"})
            assert r.status_code == 303 and r.headers["location"] == f"/r/{name}?saved=public"
            assert "The repository is now public" in olga.get(r.headers["location"]).text
        public = anonymous.get(f"/r/{name}")
        assert public.status_code == 200 and '<span class="badge public">public</span>' in public.text
        assert "Make private" not in public.text and 'name="csrf"' not in public.text
        assert anonymous_pull() == 200
        assert name in listed(anonymous.get("/").text)
        with env.browser("olga") as olga:
            post_form(olga, f"/r/{name}", f"/r/{name}/-/visibility", {"visibility": "private"})
        assert anonymous.get(f"/r/{name}").status_code == 404 and anonymous_pull() in (401, 403)
    events = _audit(env, name, "admin", 2)
    assert [e["detail"] for e in events[:2]] == [f"make repository {name} private", f"make repository {name} public"]


def test_deleting_a_tag_needs_the_csrf_token_and_respects_immutability(env: Env):
    name = "olga/deletable"
    digest = push_small(env, name, "v1")
    with env.registry(name) as c:
        oci.push_manifest(
            c, name, "dev", c.get(f"/v2/{name}/manifests/v1", headers={"Accept": oci.OCI_MANIFEST}).content
        )
    policy = env.api("PUT", "/policies/immutability", params={"repository": name}, json={"patterns": ["v*"]})
    assert policy.status_code == 200, policy.text
    with env.browser("olga") as b:
        assert b.post(f"/r/{name}/-/tags/dev/delete", data={}).status_code == 403  # no token
        assert b.post(f"/r/{name}/-/tags/dev/delete", data={"csrf": "forged"}).status_code == 403
        token = csrf_of(b.get(f"/r/{name}").text)
        other_site = b.post(
            f"/r/{name}/-/tags/dev/delete", data={"csrf": token}, headers={"Origin": "http://evil.example"}
        )
        assert other_site.status_code == 403

        refused = b.post(f"/r/{name}/-/tags/v1/delete", data={"csrf": token})
        assert refused.status_code == 403
        assert "Tag v1 was not deleted: tag &#39;v1&#39; is immutable" in refused.text
        assert '<p class="error" role="alert">' in refused.text and 'class="tag-name">v1<' in refused.text

        done = b.post(f"/r/{name}/-/tags/dev/delete", data={"csrf": token})
        assert done.status_code == 303 and done.headers["location"] == f"/r/{name}?deleted=dev"
        after = b.get(done.headers["location"]).text
        assert "Tag dev was deleted." in after and 'class="tag-name">dev<' not in after
        gone = b.post(f"/r/{name}/-/tags/dev/delete", data={"csrf": token})
        assert gone.status_code == 404 and "There is no tag dev to delete." in gone.text
    with env.registry(name, actions="pull") as c:
        assert c.get(f"/v2/{name}/tags/list").json()["tags"] == ["v1"]
        assert c.get(f"/v2/{name}/manifests/{digest}").status_code == 200
    events = _audit(env, name, "delete", 2)
    assert {(e["reference"], e["outcome"]) for e in events} >= {("dev", "ok"), ("v1", "denied")}


def test_non_administrators_see_no_forms_and_are_refused(env: Env, app: dict[str, str]):
    name = "acme/shared"
    push_small(env, name, "v1")
    with env.browser("admin") as admin:
        post_form(admin, f"/r/{name}", f"/r/{name}/-/visibility", {"visibility": "public"})
    with env.browser("tom") as tom:
        page = tom.get(f"/r/{name}").text
        assert "Save description" not in page and "Make private" not in page and "/delete" not in page
        token = csrf_of(page)  # the sign-out form's
        for action, data in (("description", {"description": "mine now"}), ("visibility", {"visibility": "private"}),
                             ("tags/v1/delete", {})):  # fmt: skip
            r = tom.post(f"/r/{name}/-/{action}", data={**data, "csrf": token})
            assert r.status_code == 403 and "Not allowed" in r.text, action
            # A repository tom cannot read is not found, whatever he posts.
            assert tom.post(f"/r/acme/app/-/{action}", data={**data, "csrf": token}).status_code == 404
        # A delete grant shows the delete buttons, not the settings; an admin grant shows both.
        grant = {"subject_type": "user", "subject": "tom", "level": "delete", "repository": name}
        assert env.api("POST", "/grants", json=grant).status_code == 200
        page = tom.get(f"/r/{name}").text
        assert f'action="/r/{name}/-/tags/v1/delete"' in page and "Save description" not in page
        assert env.api("POST", "/grants", json={**grant, "level": "admin"}).status_code == 200
        assert "Save description" in tom.get(f"/r/{name}").text
    with env.browser() as anonymous:
        assert anonymous.post(f"/r/{name}/-/visibility", data={"visibility": "private"}).status_code == 403
        assert anonymous.post("/r/acme/app/-/visibility", data={"visibility": "public"}).status_code == 404
    refused = lambda found: any(e["actor"] == "tom" and e["outcome"] == "denied" for e in found)  # noqa: E731
    events = _audit(env, name, "admin", until=refused)
    assert refused(events)
    assert "mine now" not in json.dumps(events)


# -- an open registry ---------------------------------------------------------------------------


def test_an_open_registry_is_browsable_and_read_only(tmp_path):
    server = RegistryServer(tmp_path / "data", env={"DOCKYARD_AUTH": "none"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            oci.push_image(c, "open/app", "v1")
            page = c.get("/")
            assert listed(page.text) == ["open/app"] and "Sign in" not in page.text
            assert '<span class="badge public">public</span>' in page.text  # no accounts: all public
            repo_page = c.get("/r/open/app")
            assert repo_page.status_code == 200 and 'class="tag-name">v1<' in repo_page.text
            assert "Save description" not in repo_page.text and "/delete" not in repo_page.text
            assert c.post("/r/open/app/-/tags/v1/delete", data={}).status_code == 403
            assert c.get("/v2/open/app/tags/list").json()["tags"] == ["v1"]
    finally:
        server.stop()
    assert_no_traceback(server.log())
