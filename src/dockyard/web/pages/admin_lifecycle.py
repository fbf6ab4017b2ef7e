"""Administration of what happens to images: retention and immutability policies, storage quotas,
and webhooks with their delivery logs.

Forms are turned into the admin API's JSON shapes here (durations like ``30d`` and sizes like
``10GiB`` as the CLI reads them), and everything else is the API's: the same operations check the
rules with the same domain validation (``policies.parse_rules``, ``webhook_store.check_*``) and
the same permissions (whoever administers the target; quotas are set by site admins), so a
refused form shows the message the API would answer with.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from dockyard.api.admin import policies, webhooks
from dockyard.api.admin.common import Caller, not_found
from dockyard.registry import webhook_store
from dockyard.registry.policies import KINDS
from dockyard.registry.units import parse_duration, parse_size
from dockyard.web.pages.admin_common import (
    FORM_ERRORS,
    admin_page,
    admin_view,
    done,
    field,
    inline,
    submitted,
    visitor,
)

ERRORS = (*FORM_ERRORS, ValueError)
PAGE = 50

# -- policies --------------------------------------------------------------------------------

_BLANK_POLICY = {
    "target_type": "namespace",
    "target": "",
    "keep_last": "",
    "keep_tags": "",
    "untagged_older_than": "",
    "keep_pulled_within": "",
    "patterns": "",
}


def _target(values: dict[str, str]) -> tuple[str | None, str | None]:
    """A target as the form names it: a select of namespace or repository, and the name."""
    name = values.get("target", "")
    if values.get("target_type") == "repository":
        return None, name
    return name, None


def _patterns(text: str) -> list[str]:
    """Glob patterns separated by commas, spaces or new lines."""
    return [p for p in text.replace(",", " ").split() if p]


def _rules(kind: str, values: dict[str, str]) -> dict[str, Any]:
    """The rules as the API's JSON body; ``parse_rules`` (in the operation) then checks them."""
    if kind == "immutability":
        return {"patterns": _patterns(values["patterns"])}
    data: dict[str, Any] = {}
    if values["keep_last"]:
        if not values["keep_last"].isascii() or not values["keep_last"].isdigit():
            raise ValueError("'keep_last' must be a whole number of tags")
        data["keep_last"] = int(values["keep_last"])
    if values["keep_tags"]:
        data["keep_tags"] = _patterns(values["keep_tags"])
    for key in ("untagged_older_than", "keep_pulled_within"):
        if values[key]:
            data[key] = parse_duration(values[key])
    return data


async def _policies_page(request: web.Request, who: Caller, status: int = 200, **context: Any) -> web.Response:
    context = {"forms": {kind: _BLANK_POLICY for kind in KINDS}, **context}
    return await admin_view(
        request,
        "admin/policies.html",
        status=status,
        title="Retention and immutability",
        section="policies",
        policies=await policies.visible_policies(request, who, None, None, None),
        **context,
    )


@admin_page
async def policies_list(request: web.Request) -> web.Response:
    return await _policies_page(request, await visitor(request))


@admin_page
async def set_policy(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise web.HTTPNotFound()
    values = {key: field(form, key) for key in _BLANK_POLICY}
    try:
        namespace, repository = _target(values)
        await policies.set_rules(request, who, kind, namespace, repository, _rules(kind, values))
    except ERRORS as error:
        status, message = inline(request, error)
        forms = {k: values if k == kind else _BLANK_POLICY for k in KINDS}
        return await _policies_page(request, who, status=status, error=message, forms=forms)
    raise done("/admin/policies", "policy-set")


@admin_page
async def remove_policy(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise web.HTTPNotFound()
    try:
        namespace, repository = _target({"target_type": field(form, "target_type"), "target": field(form, "target")})
        await policies.remove_rules(request, who, kind, namespace, repository)
    except ERRORS as error:
        status, message = inline(request, error)
        return await _policies_page(request, who, status=status, error=message)
    raise done("/admin/policies", "policy-removed")


# -- quotas ----------------------------------------------------------------------------------


async def _quotas_page(request: web.Request, who: Caller, status: int = 200, **context: Any) -> web.Response:
    context = {"form": {"namespace": "", "limit": ""}, **context}
    return await admin_view(
        request,
        "admin/quotas.html",
        status=status,
        title="Storage quotas",
        section="quotas",
        quotas=await policies.visible_quotas(request, who),
        **context,
    )


@admin_page
async def quotas_list(request: web.Request) -> web.Response:
    return await _quotas_page(request, await visitor(request))


@admin_page
async def set_quota(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    values = {"namespace": field(form, "namespace"), "limit": field(form, "limit")}
    try:
        await policies.set_limit(request, who, values["namespace"], parse_size(values["limit"]))
    except ERRORS as error:
        status, message = inline(request, error)
        return await _quotas_page(request, who, status=status, error=message, form=values)
    raise done("/admin/quotas", "quota-set")


@admin_page
async def remove_quota(request: web.Request) -> web.Response:
    who, _ = await submitted(request)
    try:
        await policies.remove_limit(request, who, request.match_info["namespace"])
    except ERRORS as error:
        status, message = inline(request, error)
        return await _quotas_page(request, who, status=status, error=message)
    raise done("/admin/quotas", "quota-removed")


# -- webhooks --------------------------------------------------------------------------------

_BLANK_WEBHOOK = {
    "target_type": "namespace",
    "target": "",
    "url": "",
    "secret": "",
    "events": webhook_store.DEFAULT_EVENTS,
}


async def _webhooks_page(request: web.Request, who: Caller, status: int = 200, **context: Any) -> web.Response:
    context = {"form": _BLANK_WEBHOOK, "created": None, **context}
    return await admin_view(
        request,
        "admin/webhooks.html",
        status=status,
        title="Webhooks",
        section="webhooks",
        webhooks=await webhooks.visible_webhooks(request, who),
        events=webhook_store.EVENTS,
        **context,
    )


@admin_page
async def webhooks_list(request: web.Request) -> web.Response:
    return await _webhooks_page(request, await visitor(request))


@admin_page
async def create_webhook(request: web.Request) -> web.Response:
    who, form = await submitted(request)
    values: dict[str, Any] = {key: field(form, key) for key in ("target_type", "target", "url", "secret")}
    values["events"] = [e for e in form.getall("events", []) if isinstance(e, str)]
    try:
        namespace, repository = _target(values)
        webhook, secret = await webhooks.add_webhook(
            request, who, values["url"], values["events"], namespace, repository, values["secret"] or None
        )
    except ERRORS as error:
        status, message = inline(request, error)
        return await _webhooks_page(request, who, status=status, error=message, form={**values, "secret": ""})
    return await _webhooks_page(request, who, created={"webhook": webhook, "secret": secret})


def _webhook_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18 or int(raw) < 1:
        raise not_found(f"no webhook {raw}")
    return int(raw)


@admin_page
async def remove_webhook(request: web.Request) -> web.Response:
    who, _ = await submitted(request)
    try:
        await webhooks.remove_webhook(request, who, _webhook_id(request))
    except ERRORS as error:
        status, message = inline(request, error)
        return await _webhooks_page(request, who, status=status, error=message)
    raise done("/admin/webhooks", "webhook-removed")


def _before(query: MultiDictProxy[str]) -> int | None:
    raw = query.get("before_id", "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) <= 18 else None


@admin_page
async def deliveries(request: web.Request) -> web.Response:
    """A webhook's delivery log, newest first, ``PAGE`` at a time (older: ``?before_id=``)."""
    who = await visitor(request)
    webhook_id = _webhook_id(request)
    status = request.query.get("status") or None
    if status not in (None, *webhook_store.STATUSES):
        status = None
    before = _before(request.query)
    webhook, found = await webhooks.delivery_log(request, who, webhook_id, status, before, PAGE)
    return await admin_view(
        request,
        "admin/webhook.html",
        title=f"Webhook {webhook.id}",
        section="webhooks",
        webhook=webhook,
        deliveries=found,
        status_filter=status or "",
        statuses=webhook_store.STATUSES,
        older=found[-1].id if len(found) == PAGE else None,
    )


@admin_page
async def ping(request: web.Request) -> web.Response:
    who, _ = await submitted(request)
    webhook_id = _webhook_id(request)
    await webhooks.send_ping(request, who, webhook_id)
    raise done(f"/admin/webhooks/{webhook_id}", "pinged")


@admin_page
async def redeliver(request: web.Request) -> web.Response:
    who, _ = await submitted(request)
    webhook_id = _webhook_id(request)
    await webhooks.send_again(request, who, webhook_id, request.match_info["delivery_id"])
    raise done(f"/admin/webhooks/{webhook_id}", "redelivered")


ROUTES = [
    ("GET", "/admin/policies", policies_list),
    ("POST", "/admin/policies/{kind}", set_policy),
    ("POST", "/admin/policies/{kind}/remove", remove_policy),
    ("GET", "/admin/quotas", quotas_list),
    ("POST", "/admin/quotas", set_quota),
    ("POST", "/admin/quotas/{namespace}/remove", remove_quota),
    ("GET", "/admin/webhooks", webhooks_list),
    ("POST", "/admin/webhooks", create_webhook),
    ("GET", "/admin/webhooks/{id}", deliveries),
    ("POST", "/admin/webhooks/{id}/remove", remove_webhook),
    ("POST", "/admin/webhooks/{id}/ping", ping),
    ("POST", "/admin/webhooks/{id}/deliveries/{delivery_id}/redeliver", redeliver),
]
