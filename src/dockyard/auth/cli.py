"""``dockyard user|org|team|repo|token|robot``: manage accounts, credentials and access on the
registry's own database.

Each command opens the database of the configured data folder, migrates it (so it works before
the first ``serve``), runs one transaction and closes it. ``--data-dir`` and ``--config`` are
accepted on the group and on every command (``dockyard user add NAME --data-dir D`` reads as
naturally as ``dockyard user --data-dir D add NAME``); DOCKYARD_DATA_DIR and DOCKYARD_CONFIG work
through ``config.load`` as for ``serve``.

Every change is an "admin" event in the audit log, worded as the admin API words it, and written
in the change's own transaction (``_change``) with the operating-system user as actor
(``cli:NAME``) and ``local`` as client. Whoever can open the database may change anything without
logging in, so the log cannot say who they are; it can at least say that a change was made
locally, by which system account, and when.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from dockyard import config
from dockyard.auth import accounts, credentials
from dockyard.auth import audit as audit_log
from dockyard.auth.permissions import LEVELS
from dockyard.meta.db import Database

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)[param.name] = value


def _location(f: F) -> F:
    """``--data-dir`` and ``--config``, stored in the context rather than passed to ``f``."""
    f = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        expose_value=False,
        callback=_remember,
        help="TOML settings [DOCKYARD_CONFIG]",
    )(f)
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False),
        expose_value=False,
        callback=_remember,
        help="Data folder [DOCKYARD_DATA_DIR, default ./data]",
    )(f)


def _run(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(conn, *args)`` in one transaction on the configured database."""
    where = click.get_current_context().find_object(dict) or {}
    try:
        settings = config.load(where.get("config_file"), data_dir=where.get("data_dir"))
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        db.migrate()
        return db.run_sync(fn, *args)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()


def _cli_actor() -> str:
    """``cli:`` and the operating-system user: the only identity a local command has."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment and no passwd entry
        name = "unknown"
    return f"cli:{name}"[:160]


def _change(fn: Callable[..., T], *args: Any, detail: str, repository: str | None = None) -> T:
    """``_run`` for a change: the change and its audit event commit together, or neither does.
    ``detail`` says what changed (never a secret); ``repository`` is the repository or namespace
    it concerns, as in the admin API's events."""

    def change_and_record(conn: sa.Connection) -> T:
        result = fn(conn, *args)
        audit_log.write(conn, audit_log.Event(audit_log.ADMIN, _cli_actor(), "local", repository, detail=detail))
        return result

    return _run(change_and_record)


_password = click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The password (prompted for when not given; on the command line it is visible to other local users)",
)
_level = click.argument("level", metavar="LEVEL", type=click.Choice(list(LEVELS), case_sensitive=False))
_repository = click.option("--repository", "-r", help="One repository, by its full name")
_namespace = click.option("--namespace", "-n", help="Every repository under NAMESPACE/ (a user or organization)")


def _target(repository: str | None, namespace: str | None) -> str:
    return f"{namespace}/*" if namespace else str(repository)


def _print_grants(found: list[accounts.Grant]) -> None:
    for g in found:
        click.echo(f"{g.target}\t{g.level_name}")


# -- users ---------------------------------------------------------------------------------


@click.group()
@_location
def user() -> None:
    """Manage users."""


@user.command("add")
@_location
@click.argument("name")
@_password
@click.option("--admin", is_flag=True, help="Make the user a site administrator (every permission everywhere)")
def user_add(name: str, password: str, admin: bool) -> None:
    """Create user NAME; they own every repository under NAME/."""
    _change(accounts.add_user, name, password, admin,
            detail=f"create user {name}" + (" as a site administrator" if admin else ""))
    click.echo(f"created user {name}" + (" (site admin)" if admin else ""))


@user.command("list")
@_location
def user_list() -> None:
    """List users, with their site-admin and disabled flags."""
    for u in _run(accounts.list_users):
        flags = [f for f, on in (("admin", u.is_admin), ("disabled", u.disabled)) if on]
        click.echo(u.name + (f"\t{','.join(flags)}" if flags else ""))


@user.command("passwd")
@_location
@click.argument("name")
@_password
def user_passwd(name: str, password: str) -> None:
    """Set the password of user NAME."""
    _change(accounts.set_password, name, password, detail=f"reset the password of user {name}")
    click.echo(f"password of {name} changed")


@user.command("remove")
@_location
@click.argument("name")
def user_remove(name: str) -> None:
    """Remove user NAME with their team memberships and grants (their repositories stay)."""
    _change(accounts.remove_user, name, detail=f"remove user {name}")
    click.echo(f"removed user {name}")


@user.command("disable")
@_location
@click.argument("name")
def user_disable(name: str) -> None:
    """Stop user NAME from logging in or using their tokens; grants are kept."""
    _change(accounts.set_disabled, name, True, detail=f"disable user {name}")
    click.echo(f"disabled user {name}")


@user.command("enable")
@_location
@click.argument("name")
def user_enable(name: str) -> None:
    """Let a disabled user NAME in again."""
    _change(accounts.set_disabled, name, False, detail=f"enable user {name}")
    click.echo(f"enabled user {name}")


@user.command("grant")
@_location
@click.argument("name")
@_level
@_repository
@_namespace
def user_grant(name: str, level: str, repository: str | None, namespace: str | None) -> None:
    """Give user NAME the LEVEL on a repository or a namespace (replacing an earlier grant there)."""
    _change(accounts.grant, "user", name, level, namespace, repository,
            detail=audit_log.granted(level, "user", name, namespace, repository), repository=namespace or repository)
    click.echo(f"granted {level.lower()} on {_target(repository, namespace)} to user {name}")


@user.command("revoke")
@_location
@click.argument("name")
@_repository
@_namespace
def user_revoke(name: str, repository: str | None, namespace: str | None) -> None:
    """Take back user NAME's grant on a repository or a namespace."""
    _change(accounts.revoke, "user", name, namespace, repository,
            detail=audit_log.revoked("user", name, namespace, repository), repository=namespace or repository)
    click.echo(f"revoked user {name}'s grant on {_target(repository, namespace)}")


@user.command("grants")
@_location
@click.argument("name")
def user_grants(name: str) -> None:
    """List the grants given to user NAME directly (not through teams)."""
    _print_grants(_run(accounts.list_grants, "user", name))


# -- organizations -------------------------------------------------------------------------


@click.group()
@_location
def org() -> None:
    """Manage organizations: namespaces shared through teams."""


@org.command("create")
@_location
@click.argument("name")
def org_create(name: str) -> None:
    """Create organization NAME (a name no user has)."""
    _change(accounts.create_org, name, detail=f"create organization {name}", repository=name)
    click.echo(f"created organization {name}")


@org.command("list")
@_location
def org_list() -> None:
    """List organizations."""
    for name in _run(accounts.list_orgs):
        click.echo(name)


# -- teams ---------------------------------------------------------------------------------


@click.group()
@_location
def team() -> None:
    """Manage the teams of an organization and what they may access."""


@team.command("create")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
def team_create(org_name: str, name: str) -> None:
    """Create team TEAM in organization ORG."""
    _change(accounts.create_team, org_name, name, detail=f"create team {org_name}/{name}", repository=org_name)
    click.echo(f"created team {org_name}/{name}")


@team.command("list")
@_location
@click.argument("org_name", metavar="ORG")
def team_list(org_name: str) -> None:
    """List the teams of ORG with their members."""
    for name, members in _run(accounts.list_teams, org_name).items():
        click.echo(f"{name}\t{' '.join(members)}")


@team.command("add-member")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
@click.argument("user_name", metavar="USER")
def team_add_member(org_name: str, name: str, user_name: str) -> None:
    """Add USER to ORG/TEAM."""
    _change(accounts.add_member, org_name, name, user_name,
            detail=f"add {user_name} to team {org_name}/{name}", repository=org_name)
    click.echo(f"added {user_name} to {org_name}/{name}")


@team.command("remove-member")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
@click.argument("user_name", metavar="USER")
def team_remove_member(org_name: str, name: str, user_name: str) -> None:
    """Remove USER from ORG/TEAM."""
    _change(accounts.remove_member, org_name, name, user_name,
            detail=f"remove {user_name} from team {org_name}/{name}", repository=org_name)
    click.echo(f"removed {user_name} from {org_name}/{name}")


@team.command("grant")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
@_level
@_repository
@_namespace
def team_grant(org_name: str, name: str, level: str, repository: str | None, namespace: str | None) -> None:
    """Give ORG/TEAM the LEVEL on a repository or a namespace (replacing an earlier grant there)."""
    team_name = f"{org_name}/{name}"
    _change(accounts.grant, "team", team_name, level, namespace, repository,
            detail=audit_log.granted(level, "team", team_name, namespace, repository),
            repository=namespace or repository)
    click.echo(f"granted {level.lower()} on {_target(repository, namespace)} to team {org_name}/{name}")


@team.command("revoke")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
@_repository
@_namespace
def team_revoke(org_name: str, name: str, repository: str | None, namespace: str | None) -> None:
    """Take back ORG/TEAM's grant on a repository or a namespace."""
    team_name = f"{org_name}/{name}"
    _change(accounts.revoke, "team", team_name, namespace, repository,
            detail=audit_log.revoked("team", team_name, namespace, repository), repository=namespace or repository)
    click.echo(f"revoked team {org_name}/{name}'s grant on {_target(repository, namespace)}")


@team.command("grants")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name", metavar="TEAM")
def team_grants(org_name: str, name: str) -> None:
    """List the grants of ORG/TEAM."""
    _print_grants(_run(accounts.list_grants, "team", f"{org_name}/{name}"))


# -- repositories --------------------------------------------------------------------------


@click.group()
@_location
def repo() -> None:
    """Manage repository settings."""


@repo.command("visibility")
@_location
@click.argument("name")
@click.argument("visibility", type=click.Choice(["public", "private"]))
def repo_visibility(name: str, visibility: str) -> None:
    """Make repository NAME public (anyone may pull, anonymous included) or private."""
    _change(accounts.set_visibility, name, visibility == "public",
            detail=f"make repository {name} {visibility}", repository=name)
    click.echo(f"{name} is now {visibility}")


# -- personal access tokens ------------------------------------------------------------------


def _when(timestamp: float | None) -> str:
    return "-" if timestamp is None else datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%MZ")


@click.group()
@_location
def token() -> None:
    """Manage personal access tokens: a user's extra passwords for scripts and CI, each with a
    scope, an optional expiry, and revocable alone."""


@token.command("create")
@_location
@click.argument("user_name", metavar="USER")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(list(credentials.SCOPES)),
    default="read",
    show_default=True,
    help="What the token may do: pull; pull and push; or all the user may do",
)
@click.option("--expires-days", type=click.IntRange(min=1), help="Expire after this many days [default: never]")
def token_create(user_name: str, name: str, scope: str, expires_days: int | None) -> None:
    """Create token NAME for USER and print its secret, once.

    The secret is the only thing on standard output, so a script can capture it; use it as the
    password with USER as the login name (docker login -u USER --password-stdin).
    """
    lifetime = f"expires in {expires_days} days" if expires_days else "no expiry"
    _token_id, secret = _change(credentials.create_token, user_name, name, scope, expires_days,
                                detail=f"create token {name} of user {user_name} (scope {scope}, {lifetime})")
    expiry = f", expires {_when(time.time() + expires_days * 86400)}" if expires_days else ""
    click.echo(f"created token {name} for {user_name} ({scope}{expiry}); the secret is shown once:", err=True)
    click.echo(secret)


@token.command("list")
@_location
@click.argument("user_name", metavar="USER")
def token_list(user_name: str) -> None:
    """List USER's tokens: name, scope, state, created, expires, last used (UTC)."""
    now = time.time()
    for t in _run(credentials.list_tokens, user_name):
        click.echo(
            "\t".join((t.name, t.scope, t.state(now), _when(t.created_at), _when(t.expires_at), _when(t.last_used_at)))
        )


@token.command("revoke")
@_location
@click.argument("user_name", metavar="USER")
@click.argument("name")
def token_revoke(user_name: str, name: str) -> None:
    """Revoke USER's token NAME: logins with it fail at once, tokens issued from it within seconds."""
    _change(credentials.revoke_token, user_name, name, detail=f"revoke token {name} of user {user_name}")
    click.echo(f"revoked token {name} of {user_name}")


# -- robot accounts ------------------------------------------------------------------------


def _robot(org_name: str, name: str) -> str:
    return f"{org_name}{accounts.ROBOT_SEPARATOR}{name}"


@click.group()
@_location
def robot() -> None:
    """Manage robot accounts: an organization's own logins (ORG+NAME) for automation, holding
    only the grants given to them, inside their organization."""


@robot.command("create")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name")
def robot_create(org_name: str, name: str) -> None:
    """Create robot ORG+NAME and print its login name and secret (one per line), once.

    It can do nothing until granted access with 'dockyard robot grant'.
    """
    fullname, secret = _change(credentials.create_robot, org_name, name,
                               detail=f"create robot {_robot(org_name, name)}", repository=org_name)
    click.echo(f"created robot {fullname}; the secret is shown once:", err=True)
    click.echo(fullname)
    click.echo(secret)


@robot.command("list")
@_location
@click.argument("org_name", metavar="ORG")
def robot_list(org_name: str) -> None:
    """List the robots of ORG with when they were created (UTC)."""
    for r in _run(credentials.list_robots, org_name):
        click.echo(f"{r.fullname}\t{_when(r.created_at)}")


@robot.command("remove")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name")
def robot_remove(org_name: str, name: str) -> None:
    """Remove robot ORG+NAME and its grants; its tokens stop working within seconds."""
    _change(credentials.remove_robot, org_name, name, detail=f"remove robot {_robot(org_name, name)}",
            repository=org_name)
    click.echo(f"removed robot {_robot(org_name, name)}")


@robot.command("grant")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name")
@_level
@_repository
@_namespace
def robot_grant(org_name: str, name: str, level: str, repository: str | None, namespace: str | None) -> None:
    """Give robot ORG+NAME the LEVEL on a repository or namespace of ORG (replacing an earlier grant there)."""
    robot_name = _robot(org_name, name)
    _change(accounts.grant, "robot", robot_name, level, namespace, repository,
            detail=audit_log.granted(level, "robot", robot_name, namespace, repository),
            repository=namespace or repository)
    click.echo(f"granted {level.lower()} on {_target(repository, namespace)} to robot {_robot(org_name, name)}")


@robot.command("revoke")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name")
@_repository
@_namespace
def robot_revoke(org_name: str, name: str, repository: str | None, namespace: str | None) -> None:
    """Take back robot ORG+NAME's grant on a repository or a namespace."""
    robot_name = _robot(org_name, name)
    _change(accounts.revoke, "robot", robot_name, namespace, repository,
            detail=audit_log.revoked("robot", robot_name, namespace, repository), repository=namespace or repository)
    click.echo(f"revoked robot {_robot(org_name, name)}'s grant on {_target(repository, namespace)}")


@robot.command("grants")
@_location
@click.argument("org_name", metavar="ORG")
@click.argument("name")
def robot_grants(org_name: str, name: str) -> None:
    """List the grants of robot ORG+NAME."""
    _print_grants(_run(accounts.list_grants, "robot", _robot(org_name, name)))


# -- the audit log ------------------------------------------------------------------------------


def _since(value: str | None) -> float | None:
    """``--since 2h`` / ``30m`` / ``7d`` / ``45s``, or an ISO date-time."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return time.time() - int(value[:-1]) * units[value[-1]]
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use e.g. 30m, 2h, 7d or an ISO date-time", param_hint="--since") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@click.command("audit")
@_location
@click.option("--actor", help="Only events by this user or robot ('' for anonymous)")
@click.option("--repository", "-r", help="Only events on this repository")
@click.option("--action", type=click.Choice(list(audit_log.ACTIONS)), help="Only this kind of event")
@click.option("--outcome", type=click.Choice(["ok", "denied", "failed"]), help="Only this outcome")
@click.option("--since", help="Only events newer than this: 30m, 2h, 7d or an ISO date-time")
@click.option("--before-id", type=int, help="Page: only events older than this id")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line")
def audit(
    actor: str | None,
    repository: str | None,
    action: str | None,
    outcome: str | None,
    since: str | None,
    before_id: int | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the audit log, newest first: logins, token grants and denials, pushes, pulls, deletes."""
    rows = _run(
        lambda conn: audit_log.query(
            conn,
            actor=actor,
            repository=repository,
            action=action,
            outcome=outcome,
            since=_since(since),
            before_id=before_id,
            limit=limit,
        )
    )
    for row in rows:
        event = dict(row._mapping)
        if as_json:
            click.echo(json.dumps(event))
            continue
        when = datetime.fromtimestamp(event["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        target = ":".join(x for x in (event["repository"], event["reference"]) if x) or "-"
        click.echo(
            f"{event['id']}\t{when}\t{event['action']}\t{event['outcome']}\t{event['actor'] or '(anonymous)'}"
            f"\t{event['client']}\t{target}\t{event['detail'] or ''}"
        )
