"""``dockyard usage``: stored bytes, activity and monthly cost per repository and namespace.

Reads the configured database directly (it works while the server runs, and without it). The
figures and their definitions are ``usage_report``'s; ``--json`` prints exactly what
``GET /api/v1/usage`` answers a site administrator. Sizes are decimal (1 GB = 10^9 bytes), as
the prices are.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from dockyard import config
from dockyard.auth.cli import _location
from dockyard.meta.db import Database
from dockyard.registry import usage_report
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name


def human_size(n: float) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def money(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:.4f}"


def _when(value: str | None) -> str:
    """To the minute, UTC: enough for "when was this last used"."""
    return value.replace("T", " ")[:16] if value else "-"


def _check_name(value: str | None, what: str, one_component: bool = False) -> None:
    if value is None:
        return
    try:
        validate_name(value)
    except RegistryError:
        raise click.BadParameter(f"invalid {what} name {value!r}", param_hint=f"--{what}") from None
    if one_component and "/" in value:
        raise click.BadParameter(f"a namespace is one path component, not {value!r}", param_hint=f"--{what}")


@click.command("usage")
@_location
@click.option("--namespace", "-n", help="Only the repositories of this namespace (a user or organization)")
@click.option("--repository", "-r", help="Only this repository, with its day-by-day counts")
@click.option(
    "--days",
    type=click.IntRange(1, usage_report.MAX_DAYS),
    default=30,
    show_default=True,
    help="Pushes, pulls and bytes over this many days (today included); egress cost always uses 30",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON")
def usage(namespace: str | None, repository: str | None, days: int, as_json: bool) -> None:
    """Show stored bytes (unique and shared), tags, pulls, pushes, bytes served and the estimated
    monthly cost per repository and namespace, and the registry's totals."""
    _check_name(namespace, "namespace", one_component=True)
    _check_name(repository, "repository")
    where = click.get_current_context().find_object(dict) or {}
    try:
        settings = config.load(where.get("config_file"), data_dir=where.get("data_dir"))
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    prices = usage_report.Prices(settings.price_storage_gb_month, settings.price_egress_gb)
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        db.migrate()
        found = db.run_sync(
            lambda conn: usage_report.report(
                conn,
                prices,
                days=days,
                now=time.time(),
                namespace=namespace,
                repository=repository,
                daily=repository is not None,
            )
        )
    finally:
        db.close()
    if repository is not None and not found.repositories:
        raise click.ClickException(f"no repository named {repository!r}")
    body = found.as_json()
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    _print(body)


def _print(body: dict[str, Any]) -> None:
    console = Console()
    if not console.is_terminal:  # piped or captured: no terminal width to fit, keep rows on one line
        console = Console(width=240)
    prices = body["prices"]
    console.print(
        f"Usage {body['since']} to {body['until']} ({body['days']} days, UTC). Cost per month: "
        f"{money(prices['storage_gb_month'])}/GB-month stored (attributed bytes), "
        f"{money(prices['egress_gb'])}/GB served in the last 30 days; 1 GB = 10^9 bytes."
    )
    repos = Table(title="Repositories", title_justify="left")
    for header in ("Repository", "Stored", "Unique", "Shared", "Attributed", "Manifests", "Tags", "Pushes", "Pulls"):
        repos.add_column(header, justify="left" if header == "Repository" else "right")
    for header in ("Served", "Last push", "Last pull", "Cost/month"):
        repos.add_column(header, justify="right")
    for r in body["repositories"]:
        repos.add_row(
            r["name"],
            human_size(r["stored_bytes"]),
            human_size(r["unique_bytes"]),
            human_size(r["shared_bytes"]),
            human_size(r["attributed_bytes"]),
            str(r["manifests"]),
            str(r["tags"]),
            str(r["pushes"]),
            str(r["pulls"]),
            human_size(r["bytes_served"]),
            _when(r["last_push_at"]),
            _when(r["last_pull_at"]),
            money(r["cost"]["total"]),
        )
    console.print(repos)
    spaces = Table(title="Namespaces", title_justify="left")
    for header in ("Namespace", "Repos", "Stored", "Unique", "Shared", "Quota", "Headroom", "Pushes", "Pulls"):
        spaces.add_column(header, justify="left" if header == "Namespace" else "right")
    spaces.add_column("Served", justify="right")
    spaces.add_column("Cost/month", justify="right")
    for n in body["namespaces"]:
        quota = n["quota"]
        spaces.add_row(
            n["name"],
            str(n["repositories"]),
            human_size(n["stored_bytes"]),
            human_size(n["unique_bytes"]),
            human_size(n["shared_bytes"]),
            human_size(quota["limit_bytes"]) if quota else "-",
            human_size(quota["headroom_bytes"]) if quota else "-",
            str(n["pushes"]),
            str(n["pulls"]),
            human_size(n["bytes_served"]),
            money(n["cost"]["total"]),
        )
    console.print(spaces)
    for r in body["repositories"]:
        if "daily" in r:
            days = Table(title=f"{r['name']} by day", title_justify="left")
            for header in ("Day", "Pushes", "Pulls", "Served", "Received"):
                days.add_column(header, justify="left" if header == "Day" else "right")
            for d in r["daily"]:
                if d["pushes"] or d["pulls"] or d["bytes_served"] or d["bytes_received"]:
                    days.add_row(
                        d["day"],
                        str(d["pushes"]),
                        str(d["pulls"]),
                        human_size(d["bytes_served"]),
                        human_size(d["bytes_received"]),
                    )
            console.print(days)
    t = body["totals"]
    if t is not None:
        console.print(
            f"Registry: {human_size(t['stored_bytes'])} stored ({t['blobs']} blobs, {t['manifests']} manifests; "
            f"{human_size(t['unreferenced_bytes'])} unreferenced, awaiting garbage collection) in "
            f"{t['repositories']} repositories and {t['namespaces']} namespaces, {t['tags']} tags; "
            f"{t['pushes']} pushes, {t['pulls']} pulls, {human_size(t['bytes_served'])} served in "
            f"{body['days']} days. Cost per month: {money(t['cost']['total'])} "
            f"(storage {money(t['cost']['storage'])}, egress {money(t['cost']['egress'])})."
        )
