"""The audit log for site administrators: the events of ``GET /api/v1/audit``, newest first, with
its filters (actor, repository, action, outcome, time range) and its paging (``before_id``: the
link to older events keeps the filters and stays stable while new events arrive).

The filter form is a GET form: reading the log changes nothing, and a filtered view is a link one
can share with another administrator. Times are typed and shown in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dockyard.api.admin import audit
from dockyard.api.admin.common import require_site_admin
from dockyard.auth import audit as audit_log
from dockyard.web.pages.admin_common import FORM_ERRORS, admin_page, inline, visitor
from dockyard.web.render import page

PAGE = 100
_FILTERS = ("actor", "repository", "action", "outcome", "since", "until")


def _moment(text: str, what: str) -> float | None:
    """``2026-03-01`` or ``2026-03-01T14:30`` (a date-time field), in UTC."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} must be a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM), in UTC") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _before(text: str) -> int | None:
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise ValueError("before_id must be a positive whole number")
    return int(text)


@admin_page
async def audit_page(request: web.Request) -> web.Response:
    who = await visitor(request)
    filters = {key: request.query.get(key, "").strip() for key in _FILTERS}
    rows: list[Any] = []
    error, status = None, 200
    try:
        require_site_admin(who)
        rows = list(
            await audit.events(
                request,
                who,
                actor=filters["actor"] or None,
                repository=filters["repository"] or None,
                action=filters["action"] or None,
                outcome=filters["outcome"] or None,
                since=_moment(filters["since"], "'From'"),
                until=_moment(filters["until"], "'Until'"),
                before_id=_before(request.query.get("before_id", "")),
                limit=PAGE,
            )
        )
    except (*FORM_ERRORS, ValueError) as failure:
        status, error = inline(request, failure)
    older = None
    if len(rows) == PAGE:
        older = {**{k: v for k, v in filters.items() if v}, "before_id": rows[-1].id}
    return await page(
        request,
        "admin/audit.html",
        status=status,
        title="Audit log",
        nav="admin",
        section="audit",
        events=rows,
        filters=filters,
        actions=audit_log.ACTIONS,
        outcomes=audit.OUTCOMES,
        older=older,
        paged="before_id" in request.query,
        error=error,
    )


ROUTES = [("GET", "/admin/audit", audit_page)]
