"""``dockyard webhook``: manage webhooks and read their delivery logs on the registry's own database.

Like the account commands (``auth.cli``, whose helpers this uses), each command opens the database of
the configured data folder, runs one transaction, and records changes in the audit log. A running
server notices a webhook added or removed here within a couple of seconds (it re-reads the list
every ``webhooks.REFRESH`` seconds), and sends what is queued here (a ping, a redelivery) at its
next look at the queue, within a second or so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from dockyard.auth import audit as audit_log
from dockyard.auth.cli import _change, _location, _run
from dockyard.registry import webhook_store as store

T = TypeVar("T")


def _checked(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` with the model's refusals as the CLI's error messages."""

    def run(conn: sa.Connection, *args: Any) -> T:
        try:
            return fn(conn, *args)
        except store.WebhookError as exc:
            raise click.ClickException(str(exc)) from None

    return run


def _existing(conn: sa.Connection, webhook_id: int) -> store.Webhook:
    webhook = store.get(conn, webhook_id)
    if webhook is None:
        raise click.ClickException(f"no webhook {webhook_id}")
    return webhook


def _target(webhook_: store.Webhook) -> str | None:
    """The repository or namespace an audit event about ``webhook_`` concerns."""
    return webhook_.namespace if webhook_.namespace is not None else webhook_.repository


def _events(wanted: tuple[str, ...]) -> str:
    return ",".join(e for e in store.EVENTS if e in wanted)


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


@click.group()
@_location
def webhook() -> None:
    """Manage webhooks: signed HTTP POSTs on push, delete and pull.

    Each request carries X-Dockyard-Event, X-Dockyard-Delivery (an id that stays the same on
    retries) and X-Dockyard-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with
    the webhook's secret>. Failed deliveries are retried with exponential backoff.
    """


@webhook.command("add")
@_location
@click.argument("url")
@click.option("--repository", "-r", help="Watch one repository, by its full name")
@click.option("--namespace", "-n", help="Watch every repository under NAMESPACE/ (a user or organization)")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(store.EVENTS),
    help="An event to send; repeatable [default: push and delete]",
)
@click.option("--secret", help="The signing key (16-255 printable ASCII characters) [default: generated]")
def webhook_add(
    url: str, repository: str | None, namespace: str | None, events: tuple[str, ...], secret: str | None
) -> None:
    """Create a webhook POSTing to URL and print its id and secret (one per line), once."""
    wanted = events or store.DEFAULT_EVENTS
    webhook_, secret = _change(
        _checked(store.add),
        url,
        wanted,
        namespace,
        repository,
        secret,
        detail=f"create webhook on {audit_log.target(namespace, repository)} for {_events(wanted)}",
        repository=namespace or repository,
    )
    click.echo(
        f"created webhook {webhook_.id} on {webhook_.target} for {','.join(webhook_.events)}; "
        "the secret is shown once:",
        err=True,
    )
    click.echo(webhook_.id)
    click.echo(secret)


@webhook.command("list")
@_location
@click.option("--repository", "-r", help="Only webhooks on this repository")
@click.option("--namespace", "-n", help="Only webhooks on this namespace or its repositories")
def webhook_list(repository: str | None, namespace: str | None) -> None:
    """List webhooks: id, target, events, state, deliveries pending/delivered/failed, URL."""

    def listing(conn: sa.Connection) -> list[tuple[store.Webhook, dict[str, int]]]:
        found = [w for w in store.all_webhooks(conn) if w.listed_under(namespace, repository)]
        counts = store.delivery_counts(conn, [w.id for w in found])
        return [(w, counts[w.id]) for w in found]

    for w, counts in _run(listing):
        state = "enabled" if w.enabled else "disabled"
        tally = "/".join(str(counts[s]) for s in store.STATUSES)
        click.echo("\t".join((str(w.id), w.target, ",".join(w.events), state, tally, w.url)))


@webhook.command("remove")
@_location
@click.argument("webhook_id", metavar="ID", type=int)
def webhook_remove(webhook_id: int) -> None:
    """Remove webhook ID with its delivery log and whatever it had not delivered."""
    found = _run(_existing, webhook_id)  # first, for the audit event's target
    _change(
        store.remove,
        webhook_id,
        detail=f"remove webhook {webhook_id} on {found.target}",
        repository=_target(found),
    )
    click.echo(f"removed webhook {webhook_id}")


def _set_enabled(webhook_id: int, enabled: bool) -> None:
    found = _run(_existing, webhook_id)
    verb = "enable" if enabled else "disable"
    _change(
        store.set_enabled,
        webhook_id,
        enabled,
        detail=f"{verb} webhook {webhook_id} on {found.target}",
        repository=_target(found),
    )
    click.echo(f"{verb}d webhook {webhook_id} on {found.target}")


@webhook.command("enable")
@_location
@click.argument("webhook_id", metavar="ID", type=int)
def webhook_enable(webhook_id: int) -> None:
    """Send webhook ID's events again, starting with those queued while it was disabled."""
    _set_enabled(webhook_id, True)


@webhook.command("disable")
@_location
@click.argument("webhook_id", metavar="ID", type=int)
def webhook_disable(webhook_id: int) -> None:
    """Stop queueing events for webhook ID; what it had queued waits until it is enabled."""
    _set_enabled(webhook_id, False)


@webhook.command("deliveries")
@_location
@click.argument("webhook_id", metavar="ID", type=int)
@click.option("--status", type=click.Choice(store.STATUSES), help="Only deliveries in this state")
@click.option("--before-id", type=int, help="Only deliveries older than this position (for paging)")
@click.option("--limit", type=click.IntRange(1, store.MAX_PAGE), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, payload included")
def webhook_deliveries(webhook_id: int, status: str | None, before_id: int | None, limit: int, as_json: bool) -> None:
    """Show the delivery log of webhook ID, newest first: position, delivery id, event, status,
    attempts, last HTTP status, duration, created (UTC), last error."""

    def log(conn: sa.Connection) -> list[store.Delivery]:
        _existing(conn, webhook_id)
        return store.deliveries(conn, webhook_id, status, before_id, limit)

    for d in _run(log):
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "position": d.id,
                        "delivery_id": d.delivery_id,
                        "event": d.event,
                        "status": d.status,
                        "attempts": d.attempts,
                        "created_at": d.created_at,
                        "next_attempt_at": d.next_attempt_at,
                        "delivered_at": d.delivered_at,
                        "last_status": d.last_status,
                        "last_error": d.last_error,
                        "last_duration_ms": d.last_duration_ms,
                        "payload": json.loads(d.payload),
                    }
                )
            )
            continue
        duration = f"{d.last_duration_ms:.0f}ms" if d.last_duration_ms is not None else "-"
        fields = (
            str(d.id),
            d.delivery_id,
            d.event,
            d.status,
            str(d.attempts),
            str(d.last_status or "-"),
            duration,
            _when(d.created_at),
            d.last_error or "",
        )
        click.echo("\t".join(fields))


@webhook.command("redeliver")
@_location
@click.argument("webhook_id", metavar="ID", type=int)
@click.argument("delivery_id")
def webhook_redeliver(webhook_id: int, delivery_id: str) -> None:
    """Send delivery DELIVERY_ID of webhook ID again, with the same id and payload."""

    def redeliver(conn: sa.Connection) -> store.Delivery:
        _existing(conn, webhook_id)
        found = store.redeliver(conn, webhook_id, delivery_id)
        if found is None:
            raise click.ClickException(f"webhook {webhook_id} has no delivery {delivery_id}")
        return found

    target = _target(_run(_existing, webhook_id))
    _change(redeliver, detail=f"redeliver {delivery_id} of webhook {webhook_id}", repository=target)
    click.echo(f"queued {delivery_id} again")


@webhook.command("ping")
@_location
@click.argument("webhook_id", metavar="ID", type=int)
def webhook_ping(webhook_id: int) -> None:
    """Queue a test delivery (type ping) to webhook ID and print its delivery id."""
    target = _target(_run(_existing, webhook_id))
    found = _change(
        lambda conn: store.ping(conn, _existing(conn, webhook_id)),
        detail=f"ping webhook {webhook_id}",
        repository=target,
    )
    click.echo(found.delivery_id)
