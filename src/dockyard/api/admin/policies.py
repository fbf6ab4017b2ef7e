"""``/api/v1/policies``, ``/api/v1/retention`` and ``/api/v1/quotas``: retention and immutability
rules, retention runs, and storage quotas (the rules themselves are in ``registry.policies``).

Who may do what:

* A policy on a namespace or a repository is managed by whoever administers that target, as for
  grants: the namespace's administrators for it and every repository in it, a repository's
  administrators for that repository. The listing shows the policies on targets the caller
  administers.
* Running retention on a namespace or a repository: its administrators; on everything (no
  target): site administrators. The run log is for site administrators.
* Quotas are set and removed by site administrators only (they are about the machine's disks);
  a namespace's administrators may read theirs, with the usage and headroom.

Every change, and every retention run that deletes, is an "admin" event in the audit log; the
deletions themselves are "delete" events by actor ``retention``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.api.admin import body
from dockyard.api.admin.common import (
    ApiError,
    Caller,
    administered,
    bad_request,
    caller,
    db_of,
    denied,
    no_content,
    not_found,
    record,
    require_site_admin,
    timestamp,
)
from dockyard.api.state import REGISTRY, holdings_of
from dockyard.auth import audit as audit_log
from dockyard.registry import enforcement, quotas, retention
from dockyard.registry.policies import (
    KINDS,
    Policy,
    PolicyError,
    check_target,
    delete_policy,
    get_policy,
    list_policies,
    parse_rules,
    set_policy,
)
from dockyard.registry.units import MAX_BYTES

_RULE_FIELDS = {
    "retention": {"keep_last", "keep_tags", "untagged_older_than", "keep_pulled_within"},
    "immutability": {"patterns"},
}
_BOOLEANS = {"true": True, "false": False}


def _invalid(error: PolicyError) -> ApiError:
    return bad_request(str(error), {"field": error.field} if error.field else None)


def _target(request: web.Request) -> tuple[str | None, str | None]:
    """The ``namespace`` or ``repository`` query parameter, exactly one, checked."""
    try:
        return check_target(body.query(request, "namespace"), body.query(request, "repository"))
    except PolicyError as error:
        raise _invalid(error) from None


def _optional_target(request: web.Request) -> tuple[str | None, str | None]:
    namespace, repository = body.query(request, "namespace"), body.query(request, "repository")
    return (None, None) if namespace is None and repository is None else _target(request)


async def _require_target_admin(
    request: web.Request, who: Caller, namespace: str | None, repository: str | None
) -> None:
    if not (await administered(request, who)).target(namespace, repository):
        if namespace is not None:
            raise denied(f"you do not administer {namespace + '/*'!r}", namespace)
        raise denied(f"you do not administer {repository!r}", repository)


def policy_json(policy: Policy) -> dict[str, Any]:
    return {
        "kind": policy.kind,
        "namespace": policy.namespace,
        "repository": policy.repository,
        "rules": policy.rules.as_json(),
        "created_at": timestamp(policy.created_at),
        "updated_at": timestamp(policy.updated_at),
    }


# -- policies ------------------------------------------------------------------------------


# Each operation is a function of (request, caller, ...) that checks the rule, makes the change and
# audits it, shared by the handlers here and the web UI's pages; the handlers only parse and answer.


async def visible_policies(
    request: web.Request, who: Caller, kind: str | None, namespace: str | None, repository: str | None
) -> list[Policy]:
    """The policies on targets the caller administers, optionally of one kind and one target
    (``repository`` also lists its namespace's policies, which apply to it)."""
    scope = await administered(request, who)
    found = await db_of(request).read(list_policies, kind, namespace, repository)
    if repository is not None and scope.repository(repository):
        return found
    return [p for p in found if scope.target(p.namespace, p.repository)]


async def list_all(request: web.Request) -> web.Response:
    who = await caller(request)
    kind = body.query(request, "kind")
    if kind is not None and kind not in KINDS:
        raise bad_request(f"kind must be one of {', '.join(KINDS)}", {"field": "kind"})
    namespace, repository = _optional_target(request)
    visible = await visible_policies(request, who, kind, namespace, repository)
    return web.json_response({"policies": [policy_json(p) for p in visible]})


def checked_target(namespace: str | None, repository: str | None) -> tuple[str | None, str | None]:
    """Exactly one of a namespace or a repository, valid names; a 400 otherwise."""
    try:
        return check_target(namespace, repository)
    except PolicyError as error:
        raise _invalid(error) from None


async def set_rules(
    request: web.Request, who: Caller, kind: str, namespace: str | None, repository: str | None, data: Any
) -> Policy:
    """Create or replace the ``kind`` policy of a target from its rules as JSON (checked here)."""
    namespace, repository = checked_target(namespace, repository)
    await _require_target_admin(request, who, namespace, repository)
    try:
        rules = parse_rules(kind, data)
    except PolicyError as error:
        raise _invalid(error) from None
    saved = await db_of(request).run(set_policy, kind, namespace, repository, rules)
    enforcement.invalidate()
    detail = f"set the {kind} policy of {audit_log.target(namespace, repository)}: {rules.describe()}"
    record(request, who, detail[:1000], namespace if namespace is not None else repository)
    return saved


async def remove_rules(
    request: web.Request, who: Caller, kind: str, namespace: str | None, repository: str | None
) -> None:
    namespace, repository = checked_target(namespace, repository)
    await _require_target_admin(request, who, namespace, repository)
    if not await db_of(request).run(delete_policy, kind, namespace, repository):
        raise not_found(f"no {kind} policy on {audit_log.target(namespace, repository)}")
    enforcement.invalidate()
    record(
        request,
        who,
        f"remove the {kind} policy of {audit_log.target(namespace, repository)}",
        namespace if namespace is not None else repository,
    )


def _get(kind: str):  # noqa: ANN202 - a handler
    async def get(request: web.Request) -> web.Response:
        who = await caller(request)
        namespace, repository = _target(request)
        await _require_target_admin(request, who, namespace, repository)
        found = await db_of(request).read(get_policy, kind, namespace, repository)
        if found is None:
            raise not_found(f"no {kind} policy on {audit_log.target(namespace, repository)}")
        return web.json_response(policy_json(found))

    return get


def _put(kind: str):  # noqa: ANN202 - a handler
    async def put(request: web.Request) -> web.Response:
        """Create or replace the policy of a target; the body is the rules."""
        who = await caller(request)
        namespace, repository = _target(request)
        await _require_target_admin(request, who, namespace, repository)
        data = await body.json_object(request, _RULE_FIELDS[kind])
        return web.json_response(policy_json(await set_rules(request, who, kind, namespace, repository, data)))

    return put


def _delete(kind: str):  # noqa: ANN202 - a handler
    async def delete(request: web.Request) -> web.Response:
        who = await caller(request)
        namespace, repository = _target(request)
        await remove_rules(request, who, kind, namespace, repository)
        return no_content()

    return delete


# -- retention runs ------------------------------------------------------------------------


async def run_retention(request: web.Request) -> web.Response:
    """Plan, and unless ``dry_run=true`` apply, retention now; answers the report."""
    who = await caller(request)
    raw = body.query(request, "dry_run")
    if raw is not None and raw not in _BOOLEANS:
        raise bad_request("dry_run must be true or false", {"field": "dry_run"})
    dry_run = _BOOLEANS.get(raw or "false", False)
    namespace, repository = _optional_target(request)
    if namespace is None and repository is None:
        require_site_admin(who)
    else:
        await _require_target_admin(request, who, namespace, repository)
    registry = request.config_dict[REGISTRY]
    report = await retention.apply_retention(
        registry.db, registry.hooks, dry_run, trigger="api", namespace=namespace, repository=repository
    )
    if not dry_run:
        registry.forget()
        where = audit_log.target(namespace, repository) if namespace or repository else "every repository"
        detail = f"run retention on {where}: deleted {report['tags']} tags, unlinked {report['manifests']} manifests"
        record(request, who, detail, namespace if namespace is not None else repository)
    return web.json_response(report)


def _limit(request: web.Request) -> int:
    raw = body.query(request, "limit")
    if raw is None:
        return 20
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= 1000):
        raise bad_request("limit must be an integer from 1 to 1000", {"field": "limit"})
    return int(raw)


def _run_json(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "trigger": run["trigger"],
        "dry_run": bool(run["dry_run"]),
        "started_at": timestamp(run["started_at"]),
        "finished_at": timestamp(run["finished_at"]),
        "result": run["result"],
    }


async def list_runs(request: web.Request) -> web.Response:
    require_site_admin(await caller(request))
    runs = await db_of(request).read(retention.recent_runs, _limit(request))
    return web.json_response({"runs": [_run_json(r) for r in runs]})


# -- quotas --------------------------------------------------------------------------------


def quota_json(status: quotas.QuotaStatus) -> dict[str, Any]:
    return {
        "namespace": status.namespace,
        "limit_bytes": status.limit_bytes,
        "used_bytes": status.used_bytes,
        "headroom_bytes": status.headroom_bytes,
        "updated_at": timestamp(status.updated_at),
    }


def _namespace(request: web.Request) -> str:
    try:
        namespace, _ = check_target(body.path(request, "namespace"), None)
    except PolicyError as error:
        raise _invalid(error) from None
    return str(namespace)


async def visible_quotas(request: web.Request, who: Caller) -> list[quotas.QuotaStatus]:
    """Site administrators: every quota; others: the quotas of the namespaces they administer."""
    scope = await administered(request, who)
    wanted = None if scope.everything else set(scope.namespaces)
    # From the usage report's cached holdings (kept until the next write): the same figures as
    # quotas.namespace_usage, without three queries per quota.
    return await db_of(request).read(lambda conn: holdings_of(request, conn).quota_statuses(conn, wanted))


async def list_quotas(request: web.Request) -> web.Response:
    found = await visible_quotas(request, await caller(request))
    return web.json_response({"quotas": [quota_json(q) for q in found]})


async def get_quota(request: web.Request) -> web.Response:
    """The quota (null when none) with the usage and headroom of one namespace."""
    who = await caller(request)
    namespace = _namespace(request)
    if not (await administered(request, who)).namespace(namespace):
        raise denied(f"only an administrator of namespace {namespace!r} may read its quota", namespace)
    return web.json_response(quota_json(await db_of(request).read(quotas.quota_status, namespace)))


async def set_limit(request: web.Request, who: Caller, namespace: str, limit: int) -> quotas.QuotaStatus:
    """Set a namespace's quota (site administrators: quotas are about the machine's disks)."""
    checked_target(namespace, None)
    require_site_admin(who)
    if not 1 <= limit <= MAX_BYTES:
        raise bad_request(f"field 'limit_bytes' must be an integer from 1 to {MAX_BYTES}", {"field": "limit_bytes"})
    status = await db_of(request).run(quotas.set_quota, namespace, limit)
    enforcement.invalidate()
    record(request, who, f"set the storage quota of namespace {namespace} to {limit} bytes", namespace)
    return status


async def remove_limit(request: web.Request, who: Caller, namespace: str) -> None:
    checked_target(namespace, None)
    require_site_admin(who)
    if not await db_of(request).run(quotas.delete_quota, namespace):
        raise not_found(f"namespace {namespace!r} has no quota")
    enforcement.invalidate()
    record(request, who, f"remove the storage quota of namespace {namespace}", namespace)


async def set_quota(request: web.Request) -> web.Response:
    who = await caller(request)
    namespace = _namespace(request)
    require_site_admin(who)
    data = await body.json_object(request, {"limit_bytes"})
    limit = body.positive_int(data, "limit_bytes", MAX_BYTES)
    if limit is None:
        raise bad_request("missing field 'limit_bytes'", {"field": "limit_bytes"})
    return web.json_response(quota_json(await set_limit(request, who, namespace, limit)))


async def delete_quota(request: web.Request) -> web.Response:
    who = await caller(request)
    await remove_limit(request, who, _namespace(request))
    return no_content()


ROUTES = [
    ("GET", "/policies", list_all),
    *(
        route
        for kind in KINDS
        for route in (
            ("GET", f"/policies/{kind}", _get(kind)),
            ("PUT", f"/policies/{kind}", _put(kind)),
            ("DELETE", f"/policies/{kind}", _delete(kind)),
        )
    ),
    ("POST", "/retention/run", run_retention),
    ("GET", "/retention/runs", list_runs),
    ("GET", "/quotas", list_quotas),
    ("GET", "/quotas/{namespace}", get_quota),
    ("PUT", "/quotas/{namespace}", set_quota),
    ("DELETE", "/quotas/{namespace}", delete_quota),
]
