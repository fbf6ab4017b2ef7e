"""The ``dockyard`` command."""

from __future__ import annotations

import logging
import socket

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


def setup_logging() -> None:
    """For ``serve`` and each of its workers."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_one_line_protocol_errors)


@main.command()
@click.option("--host", help="Address to listen on [DOCKYARD_HOST, default 127.0.0.1]")
@click.option("--port", type=int, help="Port to listen on [DOCKYARD_PORT, default 5000]")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data folder [DOCKYARD_DATA_DIR, default ./data]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings [DOCKYARD_CONFIG]")
@click.option(
    "--database-url",
    help="Metadata database, e.g. postgresql://user:pw@host:5432/db [DOCKYARD_DATABASE_URL, default SQLite in "
    "the data folder]",
)
@click.option(
    "--tls/--no-tls",
    default=None,
    help="HTTPS with a certificate from the local CA in <data-dir>/tls [DOCKYARD_TLS, default off]",
)
@click.option(
    "--tls-cert", type=click.Path(dir_okay=False), help="HTTPS with this certificate (PEM) [DOCKYARD_TLS_CERT]"
)
@click.option("--tls-key", type=click.Path(dir_okay=False), help="Key for --tls-cert (PEM) [DOCKYARD_TLS_KEY]")
@click.option(
    "--tls-name",
    "tls_names",
    multiple=True,
    help="Extra DNS name or IP address for the local CA's certificate; repeatable "
    "[DOCKYARD_TLS_NAMES, comma-separated]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes serving the port, under one supervisor [DOCKYARD_WORKERS, default 1]",
)
@click.option(
    "--storage",
    type=click.Choice(["filesystem", "s3"]),
    help="Where blobs go [DOCKYARD_STORAGE, default filesystem: the data folder]",
)
@click.option("--s3-bucket", help="S3 bucket [DOCKYARD_S3_BUCKET]")
@click.option("--s3-endpoint", help="S3-compatible endpoint URL [DOCKYARD_S3_ENDPOINT, default AWS]")
@click.option("--s3-region", help="S3 region [DOCKYARD_S3_REGION]")
@click.option("--s3-prefix", help="Folder of the bucket for dockyard's keys [DOCKYARD_S3_PREFIX]")
@click.option(
    "--s3-redirect/--no-s3-redirect",
    default=None,
    help="Blob downloads redirect to presigned URLs [DOCKYARD_S3_REDIRECT, default off: streamed through]",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: str | None,
    config_file: str | None,
    database_url: str | None,
    tls: bool | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_names: tuple[str, ...],
    workers: int | None,
    storage: str | None,
    s3_bucket: str | None,
    s3_endpoint: str | None,
    s3_region: str | None,
    s3_prefix: str | None,
    s3_redirect: bool | None,
) -> None:
    """Run the registry."""
    setup_logging()
    try:
        settings = config.load(
            config_file,
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            tls=tls,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_names=list(tls_names) or None,
            workers=workers,
            storage=storage,
            s3_bucket=s3_bucket,
            s3_endpoint=s3_endpoint,
            s3_region=s3_region,
            s3_prefix=s3_prefix,
            s3_redirect=s3_redirect,
        )
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    from dockyard import tls as tls_setup
    from dockyard.api.app import run
    from dockyard.meta.db import display_url
    from dockyard.workers import supervise

    metadata = display_url(settings.database_url)
    click.echo(f"dockyard {__version__}: data in {settings.data_dir.resolve()}, metadata {metadata}")
    if settings.tls_enabled and not settings.tls_cert:
        ca_cert, _ = tls_setup.ca_paths(settings.data_dir)
        click.echo(
            f"dockyard: TLS from the local CA {ca_cert.resolve()}; on each client, `dockyard trust` prints it "
            "and `dockyard trust --install --host NAME` installs it for docker and podman"
        )
    try:
        if settings.workers > 1:
            status = supervise(settings)
            if status:
                raise click.ClickException("a worker could not start; see the messages above")
        else:
            run(settings)
    except (tls_setup.TLSError, config.ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False), help="Data folder [DOCKYARD_DATA_DIR, default ./data]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML settings [DOCKYARD_CONFIG]")
@click.option(
    "--host",
    help="Name or address clients use to reach the registry "
    "[default: the serve host when concrete, else this machine's hostname]",
)
@click.option("--port", type=int, help="Port clients use [DOCKYARD_PORT, default 5000]")
@click.option("--install", is_flag=True, help="Also write it where docker and podman look for <host>:<port>")
@click.option("--docker-certs-dir", default="/etc/docker/certs.d", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--containers-certs-dir", default="/etc/containers/certs.d", show_default=True, type=click.Path(file_okay=False)
)
def trust(
    data_dir: str | None,
    config_file: str | None,
    host: str | None,
    port: int | None,
    install: bool,
    docker_certs_dir: str,
    containers_certs_dir: str,
) -> None:
    """Print the local CA certificate (PEM) that clients need to trust `serve --tls`.

    On the registry machine, `--install` installs it there; elsewhere, copy the output to
    /etc/docker/certs.d/HOST:PORT/ca.crt and /etc/containers/certs.d/HOST:PORT/ca.crt.
    """
    from dockyard import tls as tls_setup

    try:
        settings = config.load(config_file, port=port, data_dir=data_dir)
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if settings.tls_cert:
        click.echo(f"dockyard: note: serve uses {settings.tls_cert}, not the local CA", err=True)
    ca_cert, _ = tls_setup.ensure_local_ca(settings.data_dir)
    click.echo(ca_cert.read_text(), nl=False)
    if not install:
        return
    if host is None:
        concrete = settings.host.strip().strip("[]") not in tls_setup.WILDCARD_HOSTS
        host = settings.host if concrete else socket.gethostname()
    server_cert, _ = tls_setup.server_paths(settings.data_dir)
    if not settings.tls_cert and server_cert.exists() and not tls_setup.covers(server_cert, host):
        click.echo(
            f"dockyard: warning: the server certificate does not name {host}; restart serve with --tls-name {host}",
            err=True,
        )
    registry = tls_setup.registry_dir_name(host, settings.port)
    try:
        written = tls_setup.install_ca(ca_cert, registry, [docker_certs_dir, containers_certs_dir])
    except OSError as exc:
        raise click.ClickException(f"cannot install the CA ({exc}); run as root or choose the folders") from exc
    for path in written:
        click.echo(f"dockyard: wrote {path}", err=True)


def _register_admin_commands() -> None:
    from dockyard.auth.cli import audit, org, repo, robot, team, token, user
    from dockyard.meta.db_cli import db
    from dockyard.registry.gc_cli import gc
    from dockyard.registry.policies_cli import COMMANDS as policy_commands
    from dockyard.registry.usage_cli import usage
    from dockyard.registry.webhooks_cli import webhook

    for group in (user, org, team, repo, token, robot, audit, gc, usage, webhook, db, *policy_commands):
        main.add_command(group)


_register_admin_commands()
