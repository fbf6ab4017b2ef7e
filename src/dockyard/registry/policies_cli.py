"""``dockyard retention|immutable|quota``: retention policies and runs, tag immutability rules and
storage quotas, on the configured database (see ``registry.policies`` for what the rules mean).

Like the account commands, each works before the first ``serve`` and while it runs; changes are
"admin" events in the audit log with the operating-system user as actor. A running server sees a
change within two seconds (its rules cache), and tags deleted by ``retention run`` within its tag
cache's few seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from dockyard import config
from dockyard.auth import audit as audit_log
from dockyard.auth.cli import _change, _location, _run
from dockyard.meta.db import Database
from dockyard.registry import quotas, retention, usage_report
from dockyard.registry.enforcement import PolicyHooks
from dockyard.registry.hooks import AllHooks
from dockyard.registry.policies import (
    ImmutabilityRules,
    Policy,
    PolicyError,
    check_target,
    delete_policy,
    get_policy,
    list_policies,
    parse_rules,
    set_policy,
)
from dockyard.registry.units import format_size, parse_duration, parse_size

T = TypeVar("T")

_repository = click.option("--repository", "-r", help="One repository, by its full name")
_namespace = click.option("--namespace", "-n", help="Every repository of NAMESPACE (a user or organization)")


def _target(namespace: str | None, repository: str | None) -> tuple[str | None, str | None]:
    try:
        return check_target(namespace, repository)
    except PolicyError as exc:
        raise click.UsageError(f"{exc} (--namespace or --repository)") from exc


def _optional_target(namespace: str | None, repository: str | None) -> tuple[str | None, str | None]:
    return (None, None) if namespace is None and repository is None else _target(namespace, repository)


def _checked(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except (PolicyError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _subject(namespace: str | None, repository: str | None) -> str | None:
    return namespace if namespace is not None else repository


def _delete_policy(conn: sa.Connection, kind: str, namespace: str | None, repository: str | None) -> None:
    """Raises (rolling back the audit event) when there is nothing to remove."""
    if not delete_policy(conn, kind, namespace, repository):
        raise PolicyError(f"no {kind} policy on {audit_log.target(namespace, repository)}")


def _delete_quota(conn: sa.Connection, namespace: str) -> None:
    if not quotas.delete_quota(conn, namespace):
        raise PolicyError(f"namespace {namespace!r} has no quota")


def _print_policy(policy: Policy) -> None:
    click.echo(f"{policy.target}\t{policy.rules.describe()}")


# -- retention -----------------------------------------------------------------------------


@click.group("retention")
@_location
def retention_group() -> None:
    """Retention policies: which tags and untagged manifests go, per namespace or repository."""


@retention_group.command("set")
@_location
@_namespace
@_repository
@click.option("--keep-last", type=click.IntRange(min=1), help="Keep the newest N tags (by push time)")
@click.option(
    "--keep-tag", "keep_tags", multiple=True, help="Keep tags matching this glob (e.g. 'release-*'), repeatable"
)
@click.option(
    "--untagged-older-than",
    callback=_duration,
    help="Unlink untagged manifests linked longer ago than this (e.g. 7d, 12h, 0)",
)
@click.option("--keep-pulled-within", callback=_duration, help="Keep what was pulled within this (e.g. 30d)")
def retention_set(
    namespace: str | None,
    repository: str | None,
    keep_last: int | None,
    keep_tags: tuple[str, ...],
    untagged_older_than: int | None,
    keep_pulled_within: int | None,
) -> None:
    """Set (replace) the retention policy of a namespace or a repository.

    A tag is kept if any of --keep-last, --keep-tag, --keep-pulled-within keeps it; without any of
    them tags are left alone. A repository's own policy replaces its namespace's.
    """
    namespace, repository = _target(namespace, repository)
    data = {
        "keep_last": keep_last,
        "keep_tags": list(keep_tags),
        "untagged_older_than": untagged_older_than,
        "keep_pulled_within": keep_pulled_within,
    }
    rules = _checked(parse_rules, "retention", data)
    where = audit_log.target(namespace, repository)
    policy = _change(
        set_policy, "retention", namespace, repository, rules,
        detail=f"set the retention policy of {where}: {rules.describe()}", repository=_subject(namespace, repository),
    )  # fmt: skip
    click.echo(f"retention policy of {policy.target}: {rules.describe()}")


@retention_group.command("show")
@_location
@_namespace
@_repository
def retention_show(namespace: str | None, repository: str | None) -> None:
    """List retention policies: all, a namespace's (and its repositories'), or those applying to a repository."""
    namespace, repository = _optional_target(namespace, repository)
    for policy in _run(list_policies, "retention", namespace, repository):
        _print_policy(policy)


@retention_group.command("remove")
@_location
@_namespace
@_repository
def retention_remove(namespace: str | None, repository: str | None) -> None:
    """Remove the retention policy of a namespace or a repository."""
    namespace, repository = _target(namespace, repository)
    where = audit_log.target(namespace, repository)
    _policy_change(
        _delete_policy,
        "retention",
        namespace,
        repository,
        detail=f"remove the retention policy of {where}",
        repository=_subject(namespace, repository),
    )
    click.echo(f"removed the retention policy of {where}")


def _run_retention(dry_run: bool, namespace: str | None, repository: str | None) -> dict[str, Any]:
    where = click.get_current_context().find_object(dict) or {}
    try:
        settings = config.load(where.get("config_file"), data_dir=where.get("data_dir"))
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The server's hooks that act on deletions: immutability refuses, webhooks queue the events.
    from dockyard.registry.webhooks import WebhookEvents

    hooks = AllHooks([PolicyHooks(), WebhookEvents()])
    db = Database(settings.database_url)
    try:
        db.migrate()
        return asyncio.run(
            retention.apply_retention(db, hooks, dry_run, trigger="cli", namespace=namespace, repository=repository)
        )
    finally:
        db.close()


@retention_group.command("run")
@_location
@click.option("--dry-run", is_flag=True, help="Only list what would go")
@_namespace
@_repository
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON")
def retention_run(dry_run: bool, namespace: str | None, repository: str | None, as_json: bool) -> None:
    """Apply the retention policies now (the server also runs them before each scheduled GC).

    Tags and manifests are removed from repositories; their blobs are freed by the next `dockyard gc`.
    """
    namespace, repository = _optional_target(namespace, repository)
    report = _run_retention(dry_run, namespace, repository)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    unlink = "would unlink" if dry_run else "unlinked"
    for repo in report["repositories"]:
        for tag in repo["tags"]:
            click.echo(f"{repo['repository']}:{tag['tag']}\t{verb}\t{tag['reason']}")
        for manifest in repo["manifests"]:
            click.echo(f"{repo['repository']}@{manifest['digest']}\t{unlink}\t{manifest['reason']}")
        for item in repo["skipped"]:
            ref = f":{item['tag']}" if "tag" in item else f"@{item['digest']}"
            click.echo(f"{repo['repository']}{ref}\tkept\t{item['reason']}")
    click.echo(
        f"{verb} {report['tags']} tags, {unlink} {report['manifests']} manifests, kept {report['skipped']} "
        f"selected items (run {report['job_id']})",
        err=True,
    )


@retention_group.command("runs")
@_location
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
def retention_runs(limit: int) -> None:
    """The latest retention runs, newest first."""
    for run in _run(retention.recent_runs, limit):
        result = run["result"] or {}
        summary = result.get("error") or f"{result.get('tags', 0)} tags, {result.get('manifests', 0)} manifests"
        mode = "dry run" if run["dry_run"] else "applied"
        click.echo(f"{run['id']}\t{retention.iso(run['started_at'])}\t{run['trigger']}\t{mode}\t{summary}")


# -- immutability --------------------------------------------------------------------------


@click.group("immutable")
@_location
def immutable_group() -> None:
    """Tag immutability: tags matching a pattern cannot be pushed over or deleted."""


def _add_patterns(
    conn: sa.Connection, namespace: str | None, repository: str | None, patterns: tuple[str, ...]
) -> Policy:
    found = get_policy(conn, "immutability", namespace, repository)
    held = found.rules.patterns if found is not None and isinstance(found.rules, ImmutabilityRules) else ()
    rules = parse_rules("immutability", {"patterns": [*held, *patterns]})
    return set_policy(conn, "immutability", namespace, repository, rules)


def _remove_patterns(
    conn: sa.Connection, namespace: str | None, repository: str | None, patterns: tuple[str, ...]
) -> Policy | None:
    """None when the rule is gone (no pattern left, or all removed)."""
    found = get_policy(conn, "immutability", namespace, repository)
    where = audit_log.target(namespace, repository)
    if found is None or not isinstance(found.rules, ImmutabilityRules):
        raise PolicyError(f"no immutability rule on {where}")
    missing = [p for p in patterns if p not in found.rules.patterns]
    if missing:
        raise PolicyError(f"{where} has no immutability pattern {', '.join(map(repr, missing))}")
    left = [p for p in found.rules.patterns if p not in patterns] if patterns else []
    if not left:
        delete_policy(conn, "immutability", namespace, repository)
        return None
    return set_policy(conn, "immutability", namespace, repository, ImmutabilityRules(tuple(left)))


def _policy_change(fn: Callable[..., T], *args: Any, detail: str, repository: str | None) -> T:
    try:
        return _change(fn, *args, detail=detail, repository=repository)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc


@immutable_group.command("add")
@_location
@_namespace
@_repository
@click.argument("patterns", nargs=-1, required=True)
def immutable_add(namespace: str | None, repository: str | None, patterns: tuple[str, ...]) -> None:
    """Make tags matching PATTERNS (globs such as 'v*') immutable in a namespace or a repository."""
    namespace, repository = _target(namespace, repository)
    where = audit_log.target(namespace, repository)
    policy = _policy_change(
        _add_patterns,
        namespace,
        repository,
        patterns,
        detail=f"make tags {', '.join(patterns)} immutable on {where}",
        repository=_subject(namespace, repository),
    )
    _print_policy(policy)


@immutable_group.command("list")
@_location
@_namespace
@_repository
def immutable_list(namespace: str | None, repository: str | None) -> None:
    """List immutability rules: all, a namespace's (and its repositories'), or those applying to a repository."""
    namespace, repository = _optional_target(namespace, repository)
    for policy in _run(list_policies, "immutability", namespace, repository):
        _print_policy(policy)


@immutable_group.command("remove")
@_location
@_namespace
@_repository
@click.argument("patterns", nargs=-1)
def immutable_remove(namespace: str | None, repository: str | None, patterns: tuple[str, ...]) -> None:
    """Remove PATTERNS from a namespace's or repository's rule, or the whole rule without PATTERNS."""
    namespace, repository = _target(namespace, repository)
    where = audit_log.target(namespace, repository)
    what = f"immutability patterns {', '.join(patterns)}" if patterns else "the immutability rule"
    policy = _policy_change(
        _remove_patterns,
        namespace,
        repository,
        patterns,
        detail=f"remove {what} of {where}",
        repository=_subject(namespace, repository),
    )
    if policy is None:
        click.echo(f"no immutable tags on {where} any more")
    else:
        _print_policy(policy)


# -- quotas --------------------------------------------------------------------------------


@click.group("quota")
@_location
def quota_group() -> None:
    """Storage quotas per namespace (bytes shared between its repositories count once)."""


def _print_quota(status: quotas.QuotaStatus) -> None:
    limit = format_size(status.limit_bytes) if status.limit_bytes is not None else "no quota"
    headroom = format_size(status.headroom_bytes) if status.headroom_bytes is not None else "-"
    click.echo(f"{status.namespace}\t{format_size(status.used_bytes)} used\t{limit}\t{headroom} free")


def _namespace_arg(namespace: str) -> str:
    return str(_target(namespace, None)[0])


@quota_group.command("set")
@_location
@click.argument("namespace")
@click.argument("size", callback=_size, metavar="SIZE")
def quota_set(namespace: str, size: int) -> None:
    """Limit NAMESPACE to SIZE (e.g. 500MB, 2GiB, or bytes); pushes past it are refused."""
    namespace = _namespace_arg(namespace)
    status = _change(
        quotas.set_quota,
        namespace,
        size,
        detail=f"set the storage quota of namespace {namespace} to {size} bytes",
        repository=namespace,
    )
    _print_quota(status)


@quota_group.command("show")
@_location
@click.argument("namespace", required=False)
def quota_show(namespace: str | None) -> None:
    """Usage, quota and headroom of NAMESPACE, or of every namespace with a quota."""
    if namespace is None:
        for status in _run(lambda conn: usage_report.Holdings.load(conn).quota_statuses(conn)):
            _print_quota(status)
        return
    _print_quota(_run(quotas.quota_status, _namespace_arg(namespace)))


@quota_group.command("remove")
@_location
@click.argument("namespace")
def quota_remove(namespace: str) -> None:
    """Remove the quota of NAMESPACE."""
    namespace = _namespace_arg(namespace)
    _policy_change(
        _delete_quota, namespace, detail=f"remove the storage quota of namespace {namespace}", repository=namespace
    )
    click.echo(f"removed the quota of {namespace}")


COMMANDS = (retention_group, immutable_group, quota_group)
