"""``dockyard db``: the metadata schema, outside of ``serve``.

``serve`` upgrades the schema when it starts (replicas take turns through an advisory lock on
PostgreSQL), so these are for operators who migrate as a deployment step of its own, before a
rolling update, or who want to know where a database stands.
"""

from __future__ import annotations

import click

from dockyard import config
from dockyard.auth.cli import _location
from dockyard.meta.db import create_engine, current_revision, display_url, head_revision, migrate

_database_url = click.option(
    "--database-url", help="Metadata database, e.g. postgresql://user:pw@host/db [DOCKYARD_DATABASE_URL]"
)


def _settings(database_url: str | None) -> config.Settings:
    where = click.get_current_context().find_object(dict) or {}
    try:
        return config.load(where.get("config_file"), data_dir=where.get("data_dir"), database_url=database_url)
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _describe(revision: str | None) -> str:
    if revision is None:
        return "none (an empty database: `dockyard db upgrade` or `dockyard serve` creates the schema)"
    return f"{revision} (head)" if revision == head_revision() else f"{revision} (head is {head_revision()})"


@click.group()
def db() -> None:
    """The metadata database's schema."""


@db.command()
@_location
@_database_url
def upgrade(database_url: str | None) -> None:
    """Bring the schema to this version's newest revision (what `serve` does at start)."""
    settings = _settings(database_url)
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    try:
        before = migrate(engine)
        after = current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - a connection or migration failure, shown without a traceback
        raise click.ClickException(f"cannot upgrade {display_url(settings.database_url)}: {exc}") from exc
    finally:
        engine.dispose()
    verb = "already at" if before == after else f"upgraded from {before or 'an empty database'} to"
    click.echo(f"{display_url(settings.database_url)}: {verb} {_describe(after)}")


@db.command()
@_location
@_database_url
def current(database_url: str | None) -> None:
    """Print the schema's revision."""
    settings = _settings(database_url)
    engine = create_engine(settings.database_url)
    try:
        revision = current_revision(engine)
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"cannot read {display_url(settings.database_url)}: {exc}") from exc
    finally:
        engine.dispose()
    click.echo(_describe(revision))
