"""Templates: Jinja2 with autoescaping everywhere, and Markdown rendered without raw HTML.

Every value a user can set (descriptions, labels, annotations, tag and repository names, audit
details) reaches a page only through these, so escaping is decided in one place: Jinja escapes
everything not explicitly marked safe, and the only markup marked safe is markdown-it's output
with HTML disabled and its default link validation (no ``javascript:`` or ``data:`` URLs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from markdown_it import MarkdownIt
from markupsafe import Markup

from dockyard import __version__
from dockyard.registry.units import format_size
from dockyard.web import sessions
from dockyard.web.context import accounts_enabled

TEMPLATES = Path(__file__).parent / "templates"
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def markdown(text: str | None) -> Markup:
    return Markup(_markdown.render(text or ""))


def when(value: float | None) -> str:
    """A timestamp as people read it in a table: UTC, to the minute."""
    if value is None:
        return "never"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: float | None) -> str:
    return "" if value is None else datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")


def short_digest(digest: str | None) -> str:
    if not digest:
        return ""
    algorithm, _, hex_ = digest.partition(":")
    return f"{algorithm}:{hex_[:12]}"


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(size=format_size, markdown=markdown, when=when, iso=iso, short=short_digest)
environment.globals.update(version=__version__)


# What base.html reads from every page; StrictUndefined turns anything else missing into an error.
_DEFAULTS: dict[str, Any] = {"nav": "", "flash": None, "error": None}


async def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """Render ``template`` with what every page shows: who is signed in, the CSRF token for
    its forms, whether accounts exist at all."""
    session = await sessions.current(request)
    html = environment.get_template(template).render(
        request=request,
        user=session.principal if session else None,
        csrf=session.csrf if session else "",
        accounts=accounts_enabled(request),
        **{**_DEFAULTS, **context},
    )
    response = web.Response(text=html, status=status, content_type="text/html")
    # Pages show private data: never cached by shared caches, never framed by other sites.
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


async def not_found(request: web.Request, what: str = "This page") -> web.Response:
    """A repository the visitor may not see is simply "not found", exactly like a missing one."""
    return await page(request, "error.html", status=404, title="Not found", message=f"{what} was not found.")
