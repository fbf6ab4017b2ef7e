"""Recording audit events from request handlers (see ``auth.audit`` for the log itself)."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.state import AUDIT
from dockyard.auth.audit import Event


def audit(
    request: web.Request,
    action: str,
    repository: str | None = None,
    reference: str | None = None,
    outcome: str = "ok",
    detail: str | None = None,
    actor: str | None = None,
) -> None:
    if actor is None:
        claims = request.get("claims")
        actor = claims.principal.name if claims is not None else ""
    request.app[AUDIT].record(Event(action, actor, request.remote or "", repository, reference, outcome, detail))
