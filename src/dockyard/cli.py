"""The ``dockyard`` command."""

from __future__ import annotations

import logging

import click

from dockyard import __version__, config


@click.group()
@click.version_option(__version__, prog_name="dockyard")
def main() -> None:
    """dockyard: a private OCI / Docker registry."""


def _one_line_protocol_errors(record: logging.LogRecord) -> bool:
    """Malformed HTTP from a client is the client's problem: log one line, not a traceback."""
    if record.exc_info and record.exc_info[1] is not None:
        record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"
        record.args = ()
        record.exc_info = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


@main.command()
@click.option("--host", help="Address to listen on [DOCKYARD_HOST, default 127.0.0.1]")
@click.option("--port", type=int, help="Port to listen on [DOCKYARD_PORT, default 5000]")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data folder [DOCKYARD_DATA_DIR, default ./data]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings [DOCKYARD_CONFIG]")
def serve(host: str | None, port: int | None, data_dir: str | None, config_file: str | None) -> None:
    """Run the registry."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_one_line_protocol_errors)
    try:
        settings = config.load(config_file, host=host, port=port, data_dir=data_dir)
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from dockyard.api.app import run

    click.echo(f"dockyard {__version__}: data in {settings.data_dir.resolve()}, metadata {settings.database_url}")
    run(settings)
