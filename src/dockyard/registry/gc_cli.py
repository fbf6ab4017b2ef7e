"""``dockyard gc``: run a garbage collection now, on the configured data folder and database.

Safe while the server runs: the collection is the same online one the server schedules, and the
lease in the database keeps the two from overlapping.
"""

from __future__ import annotations

import json

import click

from dockyard import config
from dockyard.auth.cli import _location
from dockyard.meta.db import Database
from dockyard.registry.gc import CollectionBusy, Collector
from dockyard.registry.units import format_size as size
from dockyard.storage import open_storage


@click.command()
@_location
@click.option("--dry-run", is_flag=True, help="Report what would be freed; change nothing")
@click.option("--grace", type=float, help="Seconds an unreferenced blob is kept [settings: gc_grace]")
@click.option("--upload-ttl", type=float, help="Seconds after which an idle upload is abandoned [upload_ttl]")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON")
def gc(dry_run: bool, grace: float | None, upload_ttl: float | None, as_json: bool) -> None:
    """Remove blobs no manifest references, manifests no repository holds, abandoned uploads."""
    where = click.get_current_context().find_object(dict) or {}
    try:
        settings = config.load(where.get("config_file"), data_dir=where.get("data_dir"))
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    db = Database(settings.database_url)
    try:
        db.migrate()
        collector = Collector(
            db,
            open_storage(settings),
            settings.gc_grace if grace is None else grace,
            settings.upload_ttl if upload_ttl is None else upload_ttl,
        )
        report = collector.run(dry_run=dry_run, trigger="cli")
    except CollectionBusy as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    verb = "would free" if dry_run else "freed"
    click.echo(
        f"{verb} {size(report.bytes_freed)}: {report.blobs_removed} blobs ({size(report.blob_bytes_freed)}), "
        f"{report.manifests_removed} manifests, {report.uploads_removed} abandoned uploads, "
        f"{report.orphan_files_removed} orphaned files ({size(report.orphan_bytes_freed)}) in {report.seconds:.2f} s"
    )
    if report.blobs_waiting:
        click.echo(
            f"{report.blobs_waiting} unreferenced blobs ({size(report.blob_bytes_waiting)}) are inside the "
            f"{report.grace_seconds:g} s grace period and will go in a later run"
        )
    if dry_run:
        for digest in report.removed:
            click.echo(f"  {digest}")
