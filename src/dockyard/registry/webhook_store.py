"""Webhooks and their delivery log in the database: validation, the queries the API and the CLI
share, and the payloads receivers get.

A webhook watches one repository or a whole namespace (exactly one target, like a grant) for some
of the events ``push``, ``delete`` and ``pull``. Each event becomes one row of
``webhook_deliveries`` per webhook that wants it: the row is the queue entry (status ``pending``
until sent), the delivery log (attempts, last HTTP status, error, duration) and the payload, stored
once so that every retry and redelivery sends the very same bytes under the same delivery id.

Every function takes a Connection inside a transaction, as in ``auth.accounts``.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from dockyard.meta.tables import webhook_deliveries, webhooks
from dockyard.registry.errors import RegistryError
from dockyard.registry.hooks import Change
from dockyard.registry.names import validate_name

EVENTS = ("push", "delete", "pull")
DEFAULT_EVENTS = ("push", "delete")  # pulls can be many; a receiver asks for them explicitly
PING = "ping"  # a test delivery, asked for through the API or the CLI
STATUSES = ("pending", "delivered", "failed")
MIN_SECRET, MAX_SECRET = 16, 255
MAX_URL = 2048
MAX_PAGE = 1000


class WebhookError(ValueError):
    """Input a webhook cannot have (the API answers 400, the CLI prints it)."""


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    namespace: str | None
    repository: str | None
    url: str
    events: tuple[str, ...]
    enabled: bool
    created_at: float

    @property
    def target(self) -> str:
        """As the CLI prints targets elsewhere: ``ns/*`` or the repository's name."""
        return f"{self.namespace}/*" if self.namespace is not None else str(self.repository)

    def listed_under(self, namespace: str | None, repository: str | None) -> bool:
        """The listing filters: ``namespace`` finds the webhooks on it and on its repositories."""
        if repository is not None and self.repository != repository:
            return False
        return namespace is None or namespace in (self.namespace, (self.repository or "").split("/", 1)[0])

    def watches(self, event: str, repository: str) -> bool:
        if event not in self.events or not self.enabled:
            return False
        if self.repository is not None:
            return self.repository == repository
        return repository.split("/", 1)[0] == self.namespace


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    delivery_id: str
    webhook_id: int
    event: str
    payload: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    delivered_at: float | None
    last_status: int | None
    last_error: str | None
    last_duration_ms: float | None


# -- validation ------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """http or https with a host: a webhook POSTs there and nowhere else (redirects are not followed)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise WebhookError("the URL must start with http:// or https://")
    if len(url) > MAX_URL:
        raise WebhookError(f"the URL is longer than {MAX_URL} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise WebhookError("the URL must be ASCII without spaces (percent-encode anything else)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise WebhookError(f"invalid URL: {exc}") from None
    if not parts.hostname:
        raise WebhookError("the URL has no host")
    return url


def check_events(events: Iterable[str]) -> tuple[str, ...]:
    """A non-empty subset of EVENTS, in their canonical order (duplicates are harmless)."""
    wanted = set(events)
    unknown = sorted(wanted - set(EVENTS))
    if unknown:
        raise WebhookError(f"unknown event(s) {', '.join(map(repr, unknown))}: choose from {', '.join(EVENTS)}")
    if not wanted:
        raise WebhookError(f"give at least one event of {', '.join(EVENTS)}")
    return tuple(e for e in EVENTS if e in wanted)


def check_secret(secret: str) -> str:
    """Printable ASCII: receivers put it in configuration files and environment variables."""
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise WebhookError(f"the secret must be {MIN_SECRET} to {MAX_SECRET} characters long")
    if not all(" " <= c <= "~" for c in secret):
        raise WebhookError("the secret must be printable ASCII")
    return secret


def check_target(namespace: str | None, repository: str | None) -> None:
    if (namespace is None) == (repository is None):
        raise WebhookError("give exactly one of a namespace or a repository")
    name = str(namespace if namespace is not None else repository)
    try:
        validate_name(name)
    except RegistryError:
        raise WebhookError(f"invalid {'namespace' if namespace is not None else 'repository'} name {name!r}") from None
    if namespace is not None and "/" in namespace:
        raise WebhookError(f"a namespace is one path component, not {namespace!r}")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


# -- webhooks --------------------------------------------------------------------------------------


def _webhook(row: Any) -> Webhook:
    events = tuple(e for e in row.events.split(",") if e)
    return Webhook(row.id, row.namespace, row.repository, row.url, events, bool(row.enabled), row.created_at)


def add(
    conn: sa.Connection,
    url: str,
    events: Iterable[str],
    namespace: str | None = None,
    repository: str | None = None,
    secret: str | None = None,
) -> tuple[Webhook, str]:
    """Create a webhook; returns it with its secret (generated when not given)."""
    check_target(namespace, repository)
    url, wanted = check_url(url), check_events(events)
    secret = check_secret(secret) if secret is not None else new_secret()
    now = time.time()
    values = {
        "namespace": namespace,
        "repository": repository,
        "url": url,
        "secret": secret,
        "events": ",".join(wanted),
        "enabled": True,
        "created_at": now,
    }
    webhook_id = conn.execute(sa.insert(webhooks).values(**values)).inserted_primary_key[0]
    return Webhook(webhook_id, namespace, repository, url, wanted, True, now), secret


def get(conn: sa.Connection, webhook_id: int) -> Webhook | None:
    row = conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id)).first()
    return _webhook(row) if row else None


def all_webhooks(conn: sa.Connection) -> list[Webhook]:
    return [_webhook(r) for r in conn.execute(sa.select(webhooks).order_by(webhooks.c.id))]


def remove(conn: sa.Connection, webhook_id: int) -> bool:
    """Delete a webhook with its delivery log and whatever it had not yet delivered."""
    conn.execute(sa.delete(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id))
    return conn.execute(sa.delete(webhooks).where(webhooks.c.id == webhook_id)).rowcount > 0


def set_enabled(conn: sa.Connection, webhook_id: int, enabled: bool) -> bool:
    """A disabled webhook gets no new events; what it had queued waits until it is enabled again."""
    q = sa.update(webhooks).where(webhooks.c.id == webhook_id).values(enabled=enabled)
    return conn.execute(q).rowcount > 0


def delivery_counts(conn: sa.Connection, webhook_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Deliveries per status for each webhook (all three statuses, zeros included)."""
    counts = {i: dict.fromkeys(STATUSES, 0) for i in webhook_ids}
    if not counts:
        return counts
    d = webhook_deliveries.c
    q = sa.select(d.webhook_id, d.status, sa.func.count()).group_by(d.webhook_id, d.status)
    for webhook_id, status, n in conn.execute(q.where(d.webhook_id.in_(list(counts)))):
        if status in STATUSES:
            counts[webhook_id][status] = n
    return counts


# -- payloads and deliveries ----------------------------------------------------------------------


def rfc3339(at: float) -> str:
    """UTC to the millisecond: order among events of one second matters to a receiver."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_payload(delivery_id: str, event_id: str, webhook_id: int, change: Change, at: float) -> str:
    """What the receiver gets, in the spirit of Docker Hub's and Harbor's webhooks.

    ``id`` is the delivery id (also the X-Dockyard-Delivery header): the same on every retry, so
    a receiver that stores the ids it has handled processes each delivery once. ``event_id`` is
    shared by the deliveries of one event to several webhooks. For a delete by digest ``tags`` is
    empty; for a delete by tag it names the tag and ``digest`` is what the tag pointed to.
    """
    body = {
        "id": delivery_id,
        "event_id": event_id,
        "type": change.action,
        "occurred_at": rfc3339(at),
        "repository": {"name": change.repository, "namespace": change.repository.split("/", 1)[0]},
        "target": {
            "digest": change.digest or None,
            "tag": change.tags[0] if change.tags else None,
            "tags": list(change.tags),
            "media_type": change.media_type,
            "size": change.size,
        },
        "actor": {"name": change.actor or None},  # None: an anonymous pull, or a change by the CLI
        "webhook": {"id": webhook_id},
    }
    return json.dumps(body, separators=(",", ":"))


def ping_payload(delivery_id: str, webhook: Webhook, at: float) -> str:
    body = {
        "id": delivery_id,
        "event_id": delivery_id,
        "type": PING,
        "occurred_at": rfc3339(at),
        "webhook": {
            "id": webhook.id,
            "namespace": webhook.namespace,
            "repository": webhook.repository,
            "events": list(webhook.events),
        },
    }
    return json.dumps(body, separators=(",", ":"))


def delivery_row(delivery_id: str, webhook_id: int, event: str, payload: str, now: float) -> dict[str, Any]:
    """A new pending delivery, due at once."""
    return {
        "delivery_id": delivery_id,
        "webhook_id": webhook_id,
        "event": event,
        "payload": payload,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def new_id() -> str:
    return str(uuid.uuid4())


def ping(conn: sa.Connection, webhook: Webhook) -> Delivery:
    """Queue a test delivery to ``webhook``: the receiver checks its signature code, the sender
    sees the answer in the delivery log. Like any delivery, it waits while the webhook is disabled."""
    now, delivery_id = time.time(), new_id()
    conn.execute(
        sa.insert(webhook_deliveries).values(
            **delivery_row(delivery_id, webhook.id, PING, ping_payload(delivery_id, webhook, now), now)
        )
    )
    found = delivery(conn, webhook.id, delivery_id)
    assert found is not None
    return found


def delivery(conn: sa.Connection, webhook_id: int, delivery_id: str) -> Delivery | None:
    d = webhook_deliveries.c
    row = conn.execute(
        sa.select(webhook_deliveries).where(d.webhook_id == webhook_id, d.delivery_id == delivery_id)
    ).first()
    return _delivery(row) if row else None


def _delivery(row: Any) -> Delivery:
    return Delivery(
        row.id,
        row.delivery_id,
        row.webhook_id,
        row.event,
        row.payload,
        row.status,
        row.attempts,
        row.created_at,
        row.next_attempt_at,
        row.delivered_at,
        row.last_status,
        row.last_error,
        row.last_duration_ms,
    )


def deliveries(
    conn: sa.Connection, webhook_id: int, status: str | None = None, before_id: int | None = None, limit: int = 100
) -> list[Delivery]:
    """The delivery log of one webhook, newest first; ``before_id`` pages to older entries (keyset
    pagination, stable while new deliveries arrive)."""
    d = webhook_deliveries.c
    q = sa.select(webhook_deliveries).where(d.webhook_id == webhook_id)
    if status is not None:
        q = q.where(d.status == status)
    if before_id is not None:
        q = q.where(d.id < before_id)
    q = q.order_by(d.id.desc()).limit(max(1, min(limit, MAX_PAGE)))
    return [_delivery(r) for r in conn.execute(q)]


def redeliver(conn: sa.Connection, webhook_id: int, delivery_id: str) -> Delivery | None:
    """Send a delivery again as soon as possible, with the same id and payload; None if unknown.

    A failed or delivered one starts a new round of attempts (a receiver that lost what it had
    acknowledged can ask for it again; one that recorded the id will ignore it). A pending one is
    made due now, unless a dispatcher holds it at this moment: then it is on its way already.
    """
    found = delivery(conn, webhook_id, delivery_id)
    if found is None:
        return None
    d = webhook_deliveries.c
    now = time.time()
    q = sa.update(webhook_deliveries).where(d.id == found.id)
    if found.status == "pending":
        q = q.where(sa.or_(d.lease_until.is_(None), d.lease_until < now)).values(next_attempt_at=now)
    else:
        q = q.where(d.status == found.status).values(
            status="pending", attempts=0, next_attempt_at=now, lease_until=None
        )
    conn.execute(q)
    return delivery(conn, webhook_id, delivery_id)
