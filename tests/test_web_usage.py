"""The usage dashboard (``/usage``) against a real ``dockyard serve``: the registry of
``test_usage`` (shared layers, pulls, a quota, a public repository, a user with one grant) seen
by a site administrator, by that user and by an anonymous visitor, with the figures the usage API
gives; its SVG charts; and the garbage collection and retention runs.

The charts' arithmetic and escaping are also tested directly, without a server, with labels no
repository name could hold (``<``, ``&``, quotes): the escaping must not depend on the name rules.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import httpx
import pytest

from dockyard.registry.units import format_size
from dockyard.web import charts
from dockyard.web.pages.usage import money
from tests.oci import assert_no_traceback, push_image
from tests.server import RegistryServer
from tests.test_usage import ADMIN_PASSWORD, PAT_PASSWORD, PRICE_EGRESS, PRICE_STORAGE, Built, cost, expected
from tests.web_helpers import sign_in


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    env = {
        "DOCKYARD_AUTH": "token",
        "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DOCKYARD_PRICE_STORAGE_GB_MONTH": str(PRICE_STORAGE),
        "DOCKYARD_PRICE_EGRESS_GB": str(PRICE_EGRESS),
        "DOCKYARD_GC_INTERVAL": "0",  # no scheduled run: the runs listed are the ones the tests start
    }
    server = RegistryServer(tmp_path_factory.mktemp("web-usage") / "data", env=env).start()
    b = Built(server)
    b.build()
    b.flushed()
    yield b
    server.stop()
    assert_no_traceback(server.log())


@contextmanager
def browser(server: RegistryServer, who: str | None = None) -> Iterator[httpx.Client]:
    """A browser's cookie jar, signed in as ``who`` (anonymous when None)."""
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=False) as client:
        if who is not None:
            password = {"admin": ADMIN_PASSWORD, "pat": PAT_PASSWORD}[who]
            assert sign_in(client, who, password).status_code == 303
        yield client


def usage_page(server: RegistryServer, who: str | None, path: str = "/usage") -> str:
    with browser(server, who) as b:
        r = b.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return r.text


# -- reading the page ------------------------------------------------------------------------------


class _Rows(HTMLParser):
    """The text of each table row's cells, in order (what a person reads across a row)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def section(html: str, heading_id: str) -> str:
    found = re.search(rf'<section[^>]*aria-labelledby="{heading_id}".*?</section>', html, re.S)
    assert found, f"no section {heading_id}"
    return found.group(0)


def has_section(html: str, heading_id: str) -> bool:
    return f'aria-labelledby="{heading_id}"' in html


def rows(fragment: str) -> dict[str, list[str]]:
    """Body rows of the first table in ``fragment``, by their first cell (a name)."""
    table = re.search(r"<tbody>.*?</tbody>", fragment, re.S)
    assert table, "no table"
    parser = _Rows()
    parser.feed(table.group(0))
    return {row[0]: row[1:] for row in parser.rows}


def svg(html: str, chart_id: str) -> str:
    found = re.search(rf'<svg class="chart [a-z]+" id="{chart_id}".*?</svg>', html, re.S)
    assert found, f"no chart {chart_id}"
    return found.group(0)


# -- who sees what ---------------------------------------------------------------------------------


def test_a_site_admin_sees_the_totals_and_every_repository_with_the_api_figures(built: Built):
    html = usage_page(built.server, "admin")
    assert "<title>Usage · dockyard</title>" in html
    assert '<a href="/usage" aria-current="page">' in html
    want = expected(built)
    api = built.api("admin", "/usage").json()
    repos = rows(section(html, "repositories-heading"))
    assert sorted(repos) == ["a/x", "a/y", "b/z"]
    # Most expensive first, by default.
    costs = [cost(want[n]["attributed_bytes"], want[n]["bytes_served"])["total"] for n in repos]
    assert costs == sorted(costs, reverse=True)
    for name in ("a/x", "a/y", "b/z"):
        stored, unique, shared, attributed, cost_cell, pulls, pushes, served, last_push, last_pull = repos[name]
        w = want[name]
        assert stored == format_size(w["stored_bytes"])
        assert unique == format_size(w["unique_bytes"])
        assert shared == format_size(w["shared_bytes"])
        assert attributed == format_size(int(w["attributed_bytes"]))
        assert cost_cell == money(cost(w["attributed_bytes"], w["bytes_served"])["total"])
        assert (int(pulls), int(pushes)) == (w["pulls"], w["pushes"])
        assert served == format_size(w["bytes_served"])
        assert last_push.endswith("UTC") and last_pull.endswith("UTC")
    # The totals, as the API's.
    totals = section(html, "totals-heading")
    t = api["totals"]
    assert f"{format_size(t['stored_bytes'])} in {t['blobs']} blobs and {t['manifests']} manifests" in totals
    assert format_size(t["unreferenced_bytes"]) in totals
    assert f"{t['pulls']} pulls and {t['pushes']} pushes" in totals
    assert money(t["cost"]["total"]) in totals
    # Namespace a has a quota: a meter, the use and the headroom the quota check counts.
    spaces = section(html, "namespaces-heading")
    used, limit = want["quota_used"], 1_000_000
    assert f'max="{limit}" value="{used}"' in spaces
    assert f"{format_size(used)} of {format_size(limit)}; <strong>{format_size(limit - used)} left</strong>" in spaces
    space_rows = rows(spaces)
    assert space_rows["a"][:4] == [
        "2",
        format_size(want["a"]["stored_bytes"]),
        format_size(want["a"]["unique_bytes"]),
        format_size(want["a"]["shared_bytes"]),
    ]
    assert space_rows["b"][-1] == "No quota"
    assert has_section(html, "gc-heading") and has_section(html, "retention-heading")


def test_a_plain_user_sees_only_the_repositories_they_can_pull(built: Built):
    html = usage_page(built.server, "pat")  # a read grant on a/x; b/z is public; a/y is neither
    assert sorted(rows(section(html, "repositories-heading"))) == ["a/x", "b/z"]
    assert "a/y" not in html
    assert not has_section(html, "totals-heading")
    assert not has_section(html, "gc-heading") and not has_section(html, "retention-heading")
    assert "shown to site administrators" in html
    assert "3 pulls and 3 pushes" in svg(html, "daily-activity")  # a/x's and b/z's days only
    # Namespace a is summarised over a/x alone, and its quota (which counts a/y) is not shown.
    spaces = section(html, "namespaces-heading")
    space_rows = rows(spaces)
    assert space_rows["a"][0] == "1 (of more)"
    assert space_rows["a"][-1] == "Not shown: you see only some of its repositories"
    assert "<meter" not in spaces
    # The same figures as the API gives this user.
    api = {r["name"]: r for r in built.api("pat", "/usage").json()["repositories"]}
    assert set(api) == {"a/x", "b/z"}
    repos = rows(section(html, "repositories-heading"))
    for name, figures in api.items():
        assert repos[name][0] == format_size(figures["stored_bytes"])
        assert repos[name][4] == money(figures["cost"]["total"])


def test_an_anonymous_visitor_sees_the_public_repositories(built: Built):
    html = usage_page(built.server, None)
    assert list(rows(section(html, "repositories-heading"))) == ["b/z"]
    assert "You are not signed in" in html and 'href="/login?next=/usage"' in html
    assert not has_section(html, "totals-heading") and not has_section(html, "gc-heading")
    assert "a/x" not in html and "a/y" not in html
    assert "1 pull and 1 push." in svg(html, "daily-activity")


def test_a_repository_page_shows_its_series_and_hides_what_the_visitor_cannot_pull(built: Built):
    want = expected(built)
    html = usage_page(built.server, "admin", "/usage/r/a/x")
    assert "<title>Usage of a/x · dockyard</title>" in html
    assert (
        f"<dt>Stored</dt><dd>{format_size(want['a/x']['stored_bytes'])} in 5 blobs and 2 manifests, 2 tags</dd>" in html
    )
    daily = svg(html, "daily-activity")
    assert daily.count('<rect class="bar" ') == 30 and daily.count('<rect class="bar alt" ') == 30
    assert "2 pulls and 2 pushes" in daily
    with browser(built.server, "pat") as pat, browser(built.server) as anonymous:
        missing = pat.get("/usage/r/no/such")
        hidden = pat.get("/usage/r/a/y")
        assert missing.status_code == hidden.status_code == 404
        assert "Repository a/y was not found." in hidden.text
        assert pat.get("/usage/r/a/x").status_code == 200
        assert anonymous.get("/usage/r/a/x").status_code == 404
        assert anonymous.get("/usage/r/b/z").status_code == 200
        assert anonymous.get("/usage/r/Not..A..Name").status_code == 404


# -- the charts ------------------------------------------------------------------------------------


def test_the_dashboard_charts_are_accessible_svg_with_one_bar_per_day_and_repository(built: Built):
    with browser(built.server, "admin") as b:
        r = b.get("/usage")
    html = r.text
    assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
    assert " style=" not in html  # the CSP would block it: colours come from classes
    daily = svg(html, "daily-activity")
    assert 'role="img"' in daily and 'aria-labelledby="daily-activity-title"' in daily
    assert '<title id="daily-activity-title">Pulls and pushes per day, last 30 days</title>' in daily
    assert daily.count('<rect class="bar" ') == 30 and daily.count('<rect class="bar alt" ') == 30
    today = re.search(r"to (\d{4}-\d{2}-\d{2}), UTC", html).group(1)
    assert f"<title>{today}: 4 pulls</title>" in daily and f"<title>{today}: 5 pushes</title>" in daily
    assert "4 pulls and 5 pushes" in daily  # the description a screen reader announces
    assert f'<tr><th scope="row">{today}</th><td class="num">4</td><td class="num">5</td></tr>' in html
    storage = svg(html, "storage-per-repository")
    assert storage.count('<g class="row">') == 3
    assert storage.count('<rect class="bar shared" ') == 3
    # The window is the visitor's choice, validated like the API's.
    with browser(built.server, "admin") as b:
        week = b.get("/usage", params={"days": "7"}).text
        assert svg(week, "daily-activity").count('<rect class="bar" ') == 7
        bad = b.get("/usage", params={"days": "0"})
        assert bad.status_code == 400 and "from 1 to 366" in bad.text
    assert svg(usage_page(built.server, "pat"), "storage-per-repository").count('<g class="row">') == 2


def test_the_repository_table_sorts_by_the_chosen_column(built: Built):
    with browser(built.server, "admin") as b:
        by_name = b.get("/usage", params={"sort": "name", "order": "desc"}).text
        by_stored = b.get("/usage", params={"sort": "stored"}).text
        unknown = b.get("/usage", params={"sort": "<script>"})
    assert list(rows(section(by_name, "repositories-heading"))) == ["b/z", "a/y", "a/x"]
    assert by_name.count("aria-sort=") == 1 and 'aria-sort="descending"' in by_name
    want = expected(built)
    by_size = sorted(("a/x", "a/y", "b/z"), key=lambda n: -want[n]["stored_bytes"])
    assert list(rows(section(by_stored, "repositories-heading"))) == by_size
    assert unknown.status_code == 200 and "<script>" not in unknown.text


def test_chart_labels_are_escaped_whatever_they_contain():
    """Repository names cannot hold markup today, but the charts must not rely on that."""
    evil = '<script>alert("x")</script>&amp;'
    storage = str(charts.storage_chart([(evil, 10, 5)], chart_id="s", title=evil))
    daily = str(charts.daily_chart([{"day": "2026-01-01", "pulls": 1, "pushes": 0}], chart_id="d", title=evil))
    for out in (storage, daily):
        assert "<script>" not in out and 'alert("x")' not in out
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;amp;" in out
    assert '<g class="row">' in storage and storage.count('<rect class="bar shared" ') == 1


def test_chart_arithmetic():
    assert charts.nice_ceiling(0) == (1, 1)
    assert charts.nice_ceiling(4) == (4, 1)
    assert charts.nice_ceiling(7) == (8, 2)
    assert charts.nice_ceiling(123) == (150, 50)
    start = datetime(2026, 1, 1, tzinfo=UTC).date()
    days = [{"day": (start + timedelta(days=i)).isoformat(), "pulls": i, "pushes": 2 * i} for i in range(30)]
    out = str(charts.daily_chart(days, chart_id="d", title="t"))
    heights = [
        float(h) for h in re.findall(r'<rect class="bar alt" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', out)
    ]
    assert len(heights) == 30 and heights[0] == 0 and heights == sorted(heights)
    assert "From 2026-01-01 to 2026-01-30: 435 pulls and 870 pushes." in out
    # The tallest bar reaches the top of the axis (58 pushes, axis to 60) and no bar goes beyond.
    assert max(heights) <= 260 - 34 - 34
    assert out.count('text-anchor="middle"') <= 9  # a readable number of dates under the axis
    empty = str(charts.storage_chart([], chart_id="s", title="t"))
    assert "No repositories hold any data yet." in empty


# -- the jobs --------------------------------------------------------------------------------------


def _dockyard(server: RegistryServer, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dockyard", *args, "--data-dir", str(server.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **server.extra_env},
    )
    assert done.returncode == 0, done.stderr


def test_gc_and_retention_runs_appear_with_the_bytes_freed(built: Built):
    before = usage_page(built.server, "admin")
    assert "No garbage collection has run yet" in section(before, "gc-heading")
    # A dry run with no grace period would free the uploaded blob no manifest references
    # (changing nothing, so the other tests' figures hold), and a real run frees nothing yet.
    _dockyard(built.server, "gc", "--dry-run", "--grace", "0")
    _dockyard(built.server, "gc")
    r = httpx.post(
        f"{built.server.url}/api/v1/retention/run", params={"dry_run": "true"}, auth=("admin", ADMIN_PASSWORD)
    )
    assert r.status_code == 200, r.text
    html = usage_page(built.server, "admin")
    gc = section(html, "gc-heading")
    parser = _Rows()
    parser.feed(re.search(r"<tbody>.*?</tbody>", gc, re.S).group(0))
    real, dry = parser.rows  # newest first
    assert real[1:3] == ["cli", "collection"] and real[6] == "0 B" and real[-1] == "done"
    assert dry[1:3] == ["cli", "dry run"] and dry[3] == "1" and dry[6] == f"{format_size(len(built.U))} (would be)"
    retention = rows(section(html, "retention-heading"))
    assert len(retention) == 1
    (run,) = retention.values()
    assert run[:2] == ["api", "dry run"] and run[-1] == "done"
    assert "Garbage collection runs" not in usage_page(built.server, "pat")


# -- an open registry ------------------------------------------------------------------------------


def test_an_open_registry_shows_everything_without_signing_in(tmp_path):
    server = RegistryServer(tmp_path / "data", env={"DOCKYARD_AUTH": "none", "DOCKYARD_GC_INTERVAL": "0"}).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            push_image(c, "team/app", "1.0")
        html = usage_page(server, None)
        assert list(rows(section(html, "repositories-heading"))) == ["team/app"]
        assert has_section(html, "totals-heading") and has_section(html, "gc-heading")
        assert "Sign in" not in html and "You are not signed in" not in html
        assert usage_page(server, None, "/usage/r/team/app").count('<rect class="bar" ') == 30
    finally:
        server.stop()
    assert_no_traceback(server.log())
