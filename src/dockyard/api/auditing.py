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
        actor = actor_of(request)
    # config_dict, not app: the admin API is a sub-application, and the log lives on the main one.
    event = Event(action, actor, request.remote or "", repository, reference, outcome, detail)
    request.config_dict[AUDIT].record(event)


def actor_of(request: web.Request) -> str:
    """Who is making a registry request: a user name, ``org+robot``, or "" when anonymous."""
    claims = request.get("claims")
    return claims.principal.name if claims is not None else ""
