"""``/api/v1/audit``: the audit log for site administrators, newest first, filtered and paged
like ``dockyard audit`` (keyset pagination with ``before_id``: stable while events arrive)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import Caller, bad_request, caller, db_of, require_site_admin, timestamp
from dockyard.auth import audit as audit_log

OUTCOMES = ("ok", "denied", "failed")


def _number(request: web.Request, key: str, minimum: float, maximum: float) -> float | None:
    raw = body.query(request, key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{key} must be a number") from None
    if not minimum <= value <= maximum:
        raise bad_request(f"{key} must be between {minimum:g} and {maximum:g}")
    return value


def _integer(request: web.Request, key: str, minimum: int, maximum: int) -> int | None:
    raw = body.query(request, key)
    if raw is None:
        return None
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 20:
        raise bad_request(f"{key} must be an integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise bad_request(f"{key} must be between {minimum} and {maximum}")
    return value


def _event_json(row: Any) -> dict[str, Any]:
    event = dict(row._mapping)
    return {**event, "at": timestamp(event["at"])}


async def events(
    request: web.Request,
    who: Caller,
    *,
    actor: str | None = None,
    repository: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    since: float | None = None,
    until: float | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> Sequence[Any]:
    """A page of the audit log for a site administrator, newest first; shared with the web UI."""
    require_site_admin(who)
    if action is not None and action not in audit_log.ACTIONS:
        raise bad_request(f"action must be one of {', '.join(audit_log.ACTIONS)}")
    if outcome is not None and outcome not in OUTCOMES:
        raise bad_request(f"outcome must be one of {', '.join(OUTCOMES)}")
    for key, value, longest in (("actor", actor, 160), ("repository", repository, 255)):
        if value is not None and len(value) > longest:
            raise bad_request(f"{key} is longer than {longest} characters")
    return await db_of(request).read(
        lambda conn: audit_log.query(
            conn,
            actor=actor,
            repository=repository,
            action=action,
            outcome=outcome,
            since=since,
            until=until,
            before_id=before_id,
            limit=limit,
        )
    )


async def list_events(request: web.Request) -> web.Response:
    who = await caller(request)
    require_site_admin(who)
    action, outcome = body.query(request, "action"), body.query(request, "outcome")
    actor, repository = body.query(request, "actor"), body.query(request, "repository")
    limit = _integer(request, "limit", 1, 1000)
    before = _integer(request, "before_id", 1, 2**62)
    since, until = _number(request, "since", 0, 1e11), _number(request, "until", 0, 1e11)
    rows = await events(
        request,
        who,
        actor=actor,
        repository=repository,
        action=action,
        outcome=outcome,
        since=since,
        until=until,
        before_id=before,
        limit=limit if limit is not None else 100,
    )
    found = [_event_json(r) for r in rows]
    return web.json_response({"events": found, "next_before_id": found[-1]["id"] if found else None})


ROUTES = [("GET", "/audit", list_events)]
