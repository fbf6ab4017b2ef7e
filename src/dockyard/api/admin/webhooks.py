"""``/api/v1/webhooks``: webhooks on a repository or a namespace, and their delivery logs.

Whoever administers a target manages its webhooks, by the rule of grants: a namespace's
administrators (its owner, an organization's admins, site admins) for the namespace and every
repository in it, a repository's administrators for that repository. The list shows the webhooks
on targets the caller administers (all of them to a site admin). The secret is shown once, in the
answer that creates the webhook: it is the key receivers check signatures with.

A webhook named by id that exists on a target the caller does not administer is a 403 (audited
like every refusal); an id that does not exist is a 404.
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import Caller, bad_request, caller, db_of, denied, not_found, record, timestamp
from dockyard.api.state import WEBHOOKS
from dockyard.auth import administration
from dockyard.auth import audit as audit_log
from dockyard.auth.permissions import Principal
from dockyard.registry import webhook_store as store
from dockyard.registry.webhooks import Webhooks

_DELIVERY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_ID = 2**62


def service_of(request: web.Request) -> Webhooks:
    return request.config_dict[WEBHOOKS]


def webhook_json(webhook: store.Webhook, counts: dict[str, int] | None = None) -> dict[str, Any]:
    found = {
        "id": webhook.id,
        "namespace": webhook.namespace,
        "repository": webhook.repository,
        "url": webhook.url,
        "events": list(webhook.events),
        "enabled": webhook.enabled,
        "created_at": timestamp(webhook.created_at),
    }
    if counts is not None:
        found["deliveries"] = counts
    return found


def delivery_json(d: store.Delivery) -> dict[str, Any]:
    return {
        "delivery_id": d.delivery_id,
        "event": d.event,
        "status": d.status,
        "attempts": d.attempts,
        "created_at": timestamp(d.created_at),
        "next_attempt_at": timestamp(d.next_attempt_at) if d.status == "pending" else None,
        "delivered_at": timestamp(d.delivered_at),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "last_duration_ms": d.last_duration_ms,
        "payload": json.loads(d.payload),
    }


def _integer(raw: str | None, what: str, maximum: int = _MAX_ID) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20 or not 1 <= int(raw) <= maximum:
        raise bad_request(f"{what} must be an integer from 1 to {maximum}")
    return int(raw)


def _webhook_id(request: web.Request) -> int:
    found = _integer(body.path(request, "id"), "the webhook id")
    assert found is not None
    return found


def _administered_webhook(conn: sa.Connection, principal: Principal, webhook_id: int) -> store.Webhook:
    webhook = store.get(conn, webhook_id)
    if webhook is None:
        raise not_found(f"no webhook {webhook_id}")
    if not administration.administered(conn, principal).target(webhook.namespace, webhook.repository):
        raise denied(f"you do not administer {webhook.target!r}", webhook.namespace or webhook.repository)
    return webhook


def _target_of(webhook: store.Webhook) -> str | None:
    return webhook.namespace if webhook.namespace is not None else webhook.repository


# -- listing and creating --------------------------------------------------------------------------


# Each operation is a function of (request, caller, ...) that checks the input and the rule, makes
# the change and audits it, shared by the handlers here and the web UI's pages.


def _list(
    conn: sa.Connection, principal: Principal, namespace: str | None, repository: str | None
) -> list[tuple[store.Webhook, dict[str, int]]]:
    scope = administration.administered(conn, principal)
    found = [
        w
        for w in store.all_webhooks(conn)
        if scope.target(w.namespace, w.repository) and w.listed_under(namespace, repository)
    ]
    counts = store.delivery_counts(conn, [w.id for w in found])
    return [(w, counts[w.id]) for w in found]


async def visible_webhooks(
    request: web.Request, who: Caller, namespace: str | None = None, repository: str | None = None
) -> list[tuple[store.Webhook, dict[str, int]]]:
    """The webhooks on targets the caller administers, with their deliveries counted by status."""
    return await db_of(request).read(_list, who.principal, namespace, repository)


async def list_webhooks(request: web.Request) -> web.Response:
    who = await caller(request)
    namespace, repository = body.query(request, "namespace"), body.query(request, "repository")
    found = await visible_webhooks(request, who, namespace, repository)
    return web.json_response({"webhooks": [webhook_json(w, counts) for w, counts in found]})


def _events(data: dict[str, Any]) -> list[str]:
    events = data.get("events", list(store.DEFAULT_EVENTS))
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise bad_request("field 'events' must be a list of strings", {"field": "events"})
    return events


def _add(
    conn: sa.Connection,
    principal: Principal,
    url: str,
    events: list[str],
    namespace: str | None,
    repository: str | None,
    secret: str | None,
) -> tuple[store.Webhook, str]:
    if not administration.administered(conn, principal).target(namespace, repository):
        target = f"{namespace}/*" if namespace is not None else repository
        raise denied(f"you do not administer {target!r}", namespace if namespace is not None else repository)
    return store.add(conn, url, events, namespace, repository, secret)


async def add_webhook(
    request: web.Request,
    who: Caller,
    url: str,
    events: list[str],
    namespace: str | None,
    repository: str | None,
    secret: str | None,
) -> tuple[store.Webhook, str]:
    """Create a webhook; the secret returned (``secret`` or a new one) is shown once, here."""
    try:  # shape first, permission second: as everywhere in this API, bad input is a 400 for anyone
        store.check_target(namespace, repository)
        store.check_url(url)
        store.check_events(events)
        if secret is not None:
            store.check_secret(secret)
    except store.WebhookError as exc:
        raise bad_request(str(exc)) from None
    webhook, secret = await db_of(request).run(_add, who.principal, url, events, namespace, repository, secret)
    await service_of(request).reload()
    detail = f"create webhook {webhook.id} on {audit_log.target(namespace, repository)} for {','.join(webhook.events)}"
    record(request, who, detail, _target_of(webhook))
    return webhook, secret


async def create_webhook(request: web.Request) -> web.Response:
    who = await caller(request)
    data = await body.json_object(request, {"url", "events", "namespace", "repository", "secret"})
    for key in ("namespace", "repository", "secret", "events"):
        if key in data and data[key] is None:  # leave a field out rather than send null, as the schema says
            raise bad_request(f"field {key!r} may be left out but not null", {"field": key})
    url = body.text(data, "url", store.MAX_URL)
    namespace, repository = body.optional_text(data, "namespace"), body.optional_text(data, "repository")
    secret = body.optional_text(data, "secret", store.MAX_SECRET)
    webhook, secret = await add_webhook(request, who, url, _events(data), namespace, repository, secret)
    return web.json_response({**webhook_json(webhook, dict.fromkeys(store.STATUSES, 0)), "secret": secret}, status=201)


# -- one webhook -----------------------------------------------------------------------------------


def _remove(conn: sa.Connection, principal: Principal, webhook_id: int) -> store.Webhook:
    webhook = _administered_webhook(conn, principal, webhook_id)
    store.remove(conn, webhook_id)
    return webhook


async def remove_webhook(request: web.Request, who: Caller, webhook_id: int) -> None:
    webhook = await db_of(request).run(_remove, who.principal, webhook_id)
    await service_of(request).reload()
    record(request, who, f"remove webhook {webhook.id} on {webhook.target}", _target_of(webhook))


async def delete_webhook(request: web.Request) -> web.Response:
    who = await caller(request)
    await remove_webhook(request, who, _webhook_id(request))
    return web.Response(status=204)


def _deliveries(
    conn: sa.Connection, principal: Principal, webhook_id: int, status: str | None, before: int | None, limit: int
) -> tuple[store.Webhook, list[store.Delivery]]:
    webhook = _administered_webhook(conn, principal, webhook_id)
    return webhook, store.deliveries(conn, webhook_id, status, before, limit)


async def delivery_log(
    request: web.Request, who: Caller, webhook_id: int, status: str | None, before: int | None, limit: int
) -> tuple[store.Webhook, list[store.Delivery]]:
    """A webhook and a page of its deliveries, newest first (``before``: the id to page back from)."""
    if status is not None and status not in store.STATUSES:
        raise bad_request(f"status must be one of {', '.join(store.STATUSES)}")
    return await db_of(request).read(_deliveries, who.principal, webhook_id, status, before, limit)


async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first; page with before_id (the next_before_id of the previous page)."""
    who = await caller(request)
    webhook_id = _webhook_id(request)
    status = body.query(request, "status")
    if status is not None and status not in store.STATUSES:
        raise bad_request(f"status must be one of {', '.join(store.STATUSES)}")
    before = _integer(body.query(request, "before_id"), "before_id")
    limit = _integer(body.query(request, "limit"), "limit", store.MAX_PAGE) or 100
    _, found = await delivery_log(request, who, webhook_id, status, before, limit)
    next_before = found[-1].id if len(found) == limit else None
    return web.json_response({"deliveries": [delivery_json(d) for d in found], "next_before_id": next_before})


def _redeliver(
    conn: sa.Connection, principal: Principal, webhook_id: int, delivery_id: str
) -> tuple[store.Webhook, store.Delivery]:
    webhook = _administered_webhook(conn, principal, webhook_id)
    found = store.redeliver(conn, webhook_id, delivery_id)
    if found is None:
        raise not_found(f"webhook {webhook_id} has no delivery {delivery_id}")
    return webhook, found


async def send_again(request: web.Request, who: Caller, webhook_id: int, delivery_id: str) -> store.Delivery:
    """Send a delivery again soon, with the same id and payload (see ``webhook_store.redeliver``)."""
    if not _DELIVERY_ID.fullmatch(delivery_id):
        raise bad_request("a delivery id is a UUID in lower case, as in the X-Dockyard-Delivery header")
    webhook, found = await db_of(request).run(_redeliver, who.principal, webhook_id, delivery_id)
    service_of(request).wake()
    record(request, who, f"redeliver {delivery_id} of webhook {webhook_id}", _target_of(webhook))
    return found


async def redeliver(request: web.Request) -> web.Response:
    who = await caller(request)
    webhook_id = _webhook_id(request)
    found = await send_again(request, who, webhook_id, body.path(request, "delivery_id"))
    return web.json_response(delivery_json(found), status=202)


def _ping(conn: sa.Connection, principal: Principal, webhook_id: int) -> tuple[store.Webhook, store.Delivery]:
    webhook = _administered_webhook(conn, principal, webhook_id)
    return webhook, store.ping(conn, webhook)


async def send_ping(request: web.Request, who: Caller, webhook_id: int) -> store.Delivery:
    webhook, delivery = await db_of(request).run(_ping, who.principal, webhook_id)
    service_of(request).wake()
    record(request, who, f"ping webhook {webhook.id}", _target_of(webhook))
    return delivery


async def ping(request: web.Request) -> web.Response:
    who = await caller(request)
    delivery = await send_ping(request, who, _webhook_id(request))
    return web.json_response(delivery_json(delivery), status=202)


ROUTES = [
    ("GET", "/webhooks", list_webhooks),
    ("POST", "/webhooks", create_webhook),
    ("DELETE", "/webhooks/{id}", delete_webhook),
    ("GET", "/webhooks/{id}/deliveries", list_deliveries),
    ("POST", "/webhooks/{id}/deliveries/{delivery_id}/redeliver", redeliver),
    ("POST", "/webhooks/{id}/ping", ping),
]
