"""Personal access tokens and robot accounts (dockyard.auth.credentials): the model on a real
SQLite database, the token service's use of them, the CLI, and end to end against a real
``dockyard serve`` with token authentication, the way docker, podman and CI scripts use them."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from dockyard.auth import accounts, credentials, passwords
from dockyard.auth.accounts import AccountError
from dockyard.auth.cli import robot, token
from dockyard.auth.permissions import ADMIN, ANONYMOUS, DELETE, NONE, READ, WRITE, Principal
from dockyard.auth.service import CREDENTIAL_CHECK_TTL, AuthService
from dockyard.auth.tokens import Access, TokenService
from dockyard.meta import store
from dockyard.meta.db import Database, alembic_config, create_engine
from dockyard.meta.tables import access_tokens, grants, robots
from tests.accounts_helpers import add_user, level
from tests.oci import assert_error, push_image, repo
from tests.server import RegistryServer

pytestmark = pytest.mark.usefixtures("fast_hashing")


def _set_expiry(db: Database, token_id: int, expires_at: float) -> None:
    db.run_sync(lambda c: c.execute(
        sa.update(access_tokens).where(access_tokens.c.id == token_id).values(expires_at=expires_at)))


# -- personal access tokens -----------------------------------------------------------------


def test_a_token_secret_is_shown_once_and_stored_as_sha256(db: Database):
    add_user(db, "alice")
    token_id, secret = db.run_sync(credentials.create_token, "alice", "ci", "read-write")
    assert secret.startswith(f"dyp_{token_id}_") and len(secret) > 40
    row = db.run_sync(lambda c: c.execute(sa.select(access_tokens)).one())
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.scope == "read-write" and row.expires_at is None and row.last_used_at is None
    _, other = db.run_sync(credentials.create_token, "alice", "laptop")
    assert other != secret and other.split("_", 2)[2] != secret.split("_", 2)[2]


def test_authenticate_with_a_token(db: Database):
    alice = add_user(db, "alice", is_admin=True)
    add_user(db, "bob")
    token_id, secret = db.run_sync(credentials.create_token, "alice", "ci", "read")
    assert db.run_sync(credentials.authenticate_secret, "alice", secret) == (alice, f"pat:{token_id}")
    assert db.run_sync(credentials.authenticate_secret, "bob", secret) is None  # another user's token
    head, _, tail = secret.rpartition("_")
    wrong = [
        head + "_" + tail[:-1] + ("A" if tail[-1] != "A" else "B"),  # one character off
        f"dyp_{token_id + 1}_{tail}",  # another id
        f"dyp_{token_id}_",
        f"dyp_x{token_id}_{tail}",
        f"dyp_{token_id}",
        "dyp_",
        "",
        "x" * 5000,
        secret + " ",
        f"dyp_{'9' * 40}_{tail}",
    ]
    for guess in wrong:
        assert db.run_sync(credentials.authenticate_secret, "alice", guess) is None, guess


def test_revoked_expired_or_disabled_tokens_do_not_log_in(db: Database):
    add_user(db, "alice")
    ids = {}
    for name in ("revoked", "expired", "later"):
        ids[name] = db.run_sync(credentials.create_token, "alice", name, "read", 30)
    db.run_sync(credentials.revoke_token, "alice", "revoked")
    _set_expiry(db, ids["expired"][0], time.time() - 1)
    ok = db.run_sync(credentials.authenticate_secret, "alice", ids["later"][1])
    assert ok is not None
    for name in ("revoked", "expired"):
        assert db.run_sync(credentials.authenticate_secret, "alice", ids[name][1]) is None
        assert not db.run_sync(credentials.credential_active, f"pat:{ids[name][0]}")
    assert db.run_sync(credentials.credential_active, f"pat:{ids['later'][0]}")
    db.run_sync(accounts.set_disabled, "alice", True)
    assert db.run_sync(credentials.authenticate_secret, "alice", ids["later"][1]) is None
    assert not db.run_sync(credentials.credential_active, f"pat:{ids['later'][0]}")
    db.run_sync(accounts.set_disabled, "alice", False)
    assert db.run_sync(credentials.credential_active, f"pat:{ids['later'][0]}")


def test_last_used_is_recorded_to_the_minute(db: Database, monkeypatch: pytest.MonkeyPatch):
    add_user(db, "alice")
    token_id, secret = db.run_sync(credentials.create_token, "alice", "ci")
    now = [1_000_000.0]
    monkeypatch.setattr(credentials.time, "time", lambda: now[0])

    def last_used() -> float | None:
        return db.run_sync(credentials.list_tokens, "alice")[0].last_used_at

    db.run_sync(credentials.authenticate_secret, "alice", secret)
    assert last_used() == now[0]
    now[0] += 10
    statements: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    db.run_sync(credentials.authenticate_secret, "alice", secret)
    assert last_used() == now[0] - 10 and not any(s.startswith("UPDATE") for s in statements)
    now[0] += credentials.LAST_USED_RESOLUTION
    db.run_sync(credentials.authenticate_secret, "alice", secret)
    assert last_used() == now[0]


def test_token_management(db: Database):
    add_user(db, "alice")
    first, _ = db.run_sync(credentials.create_token, "alice", "ci", "admin", 7)
    with pytest.raises(AccountError, match="already has a token named 'ci'"):
        db.run_sync(credentials.create_token, "alice", "ci")
    db.run_sync(credentials.revoke_token, "alice", "ci")
    with pytest.raises(AccountError, match="no unrevoked token named 'ci'"):
        db.run_sync(credentials.revoke_token, "alice", "ci")
    second, _ = db.run_sync(credentials.create_token, "alice", "ci")  # the name is free again
    assert second > first
    listed = db.run_sync(credentials.list_tokens, "alice")
    assert [(t.id, t.name, t.scope, t.state()) for t in listed] == [
        (first, "ci", "admin", "revoked"), (second, "ci", "read", "active")]
    assert 7 * 86400 - 60 < listed[0].expires_at - listed[0].created_at <= 7 * 86400
    bad = [
        (("alice", "Bad Name"), "invalid token name"),
        (("alice", "x", "write"), "unknown token scope 'write'"),
        (("alice", "x", "read", 0), "positive number of days"),
        (("alice", "x", "read", -3), "positive number of days"),
        (("nobody", "x"), "no user named 'nobody'"),
    ]
    for args, message in bad:
        with pytest.raises(AccountError, match=message):
            db.run_sync(credentials.create_token, *args)
    with pytest.raises(AccountError, match="no user named"):
        db.run_sync(credentials.list_tokens, "nobody")


def test_the_schema_keeps_unrevoked_token_names_unique(db: Database):
    alice = add_user(db, "alice")
    row = {"user_id": alice.id, "name": "ci", "secret_hash": "x", "scope": "read", "created_at": 0.0}
    db.run_sync(lambda c: c.execute(sa.insert(access_tokens).values(**row, revoked_at=1.0)))
    db.run_sync(lambda c: c.execute(sa.insert(access_tokens).values(**row)))
    with pytest.raises(sa.exc.IntegrityError):
        db.run_sync(lambda c: c.execute(sa.insert(access_tokens).values(**row)))
    with pytest.raises(sa.exc.IntegrityError):
        db.run_sync(lambda c: c.execute(sa.insert(access_tokens).values(**{**row, "name": "y", "scope": "write"})))


def test_removing_a_user_removes_their_tokens_and_ids_are_never_reused(db: Database):
    add_user(db, "alice")
    token_id, secret = db.run_sync(credentials.create_token, "alice", "ci")
    db.run_sync(accounts.remove_user, "alice")
    assert db.run_sync(lambda c: c.execute(sa.select(sa.func.count()).select_from(access_tokens)).scalar()) == 0
    assert not db.run_sync(credentials.credential_active, f"pat:{token_id}")
    add_user(db, "alice")
    again, _ = db.run_sync(credentials.create_token, "alice", "ci")
    assert again > token_id  # an old JWT naming pat:<token_id> cannot match the new token
    assert db.run_sync(credentials.authenticate_secret, "alice", secret) is None


def test_credential_cap_follows_the_scope(db: Database):
    add_user(db, "alice")
    caps = {}
    for scope in ("read", "read-write", "admin"):
        token_id, _ = db.run_sync(credentials.create_token, "alice", scope, scope)
        caps[scope] = db.run_sync(credentials.credential_cap, f"pat:{token_id}")
    assert caps == {"read": READ, "read-write": WRITE, "admin": ADMIN}
    for bad in ("pat:999", "pat:", "pat:x", "pat:-1", "pat:²", "other:1", "", "robot:1", "1"):
        assert db.run_sync(credentials.credential_cap, bad) is None, bad


# -- robot accounts -------------------------------------------------------------------------


@pytest.fixture
def acme(db: Database) -> dict[str, Principal]:
    """Organizations acme and other, robot acme+ci with write on acme/app and read on other/*
    (inserted behind the checks' back), robot acme+idle with nothing; repositories acme/app,
    acme/lib (private), acme/site (public), other/x (private)."""
    for org in ("acme", "other"):
        db.run_sync(accounts.create_org, org)
    for name in ("acme/app", "acme/lib", "acme/site", "other/x"):
        db.run_sync(store.ensure_repository, name)
    db.run_sync(accounts.set_visibility, "acme/site", True)
    found = {}
    for name in ("ci", "idle"):
        fullname, secret = db.run_sync(credentials.create_robot, "acme", name)
        principal, credential = db.run_sync(credentials.authenticate_secret, fullname, secret)
        assert credential == f"robot:{principal.id}"
        found[name] = principal
    db.run_sync(accounts.grant, "robot", "acme+ci", "write", None, "acme/app")
    db.run_sync(lambda c: c.execute(sa.insert(grants).values(
        subject_type="robot", subject_id=found["ci"].id, namespace="other", level=READ)))
    return found


def test_create_and_authenticate_robots(db: Database):
    db.run_sync(accounts.create_org, "acme")
    fullname, secret = db.run_sync(credentials.create_robot, "acme", "ci")
    assert fullname == "acme+ci" and secret.startswith("dyr_")
    row = db.run_sync(lambda c: c.execute(sa.select(robots)).one())
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    principal, credential = db.run_sync(credentials.authenticate_secret, "acme+ci", secret)
    assert principal == Principal("robot", row.id, "acme+ci", False) and credential == f"robot:{row.id}"
    for username, guess in (("acme+ci", secret[:-1]), ("acme+cd", secret), ("other+ci", secret), ("acme+", secret),
                            ("+ci", secret), ("acme+ci", ""), ("acme+ci+x", secret)):
        assert db.run_sync(credentials.authenticate_secret, username, guess) is None, username
    assert db.run_sync(accounts.principal_by_id, "robot", row.id) == principal
    with pytest.raises(AccountError, match="already has a robot 'ci'"):
        db.run_sync(credentials.create_robot, "acme", "ci")
    with pytest.raises(AccountError, match="no organization named 'nope'"):
        db.run_sync(credentials.create_robot, "nope", "ci")
    with pytest.raises(AccountError, match="invalid robot name"):
        db.run_sync(credentials.create_robot, "acme", "a+b")
    db.run_sync(credentials.create_robot, "acme", "build")
    assert [r.fullname for r in db.run_sync(credentials.list_robots, "acme")] == ["acme+build", "acme+ci"]


def test_robot_level(db: Database, acme: dict[str, Principal]):
    ci, idle = acme["ci"], acme["idle"]
    expected = {
        # repository: ci, idle
        "acme/app": (WRITE, NONE),
        "acme/lib": (NONE, NONE),
        "acme/site": (READ, READ),  # public
        "other/x": (NONE, NONE),  # a grant outside its organization counts for nothing
        "acme/app/sub": (NONE, NONE),
    }
    for repository, levels in expected.items():
        assert (level(db, ci, repository), level(db, idle, repository)) == levels, repository
    db.run_sync(accounts.grant, "robot", "acme+idle", "delete", "acme")
    assert level(db, idle, "acme/lib") == DELETE and level(db, idle, "acme/new") == DELETE
    assert level(db, idle, "acme/site") == DELETE
    assert level(db, Principal("robot", ci.id, "acme+ci", is_admin=True), "acme/lib") == NONE  # the row decides
    statements: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    level(db, ci, "acme/app")
    assert len(statements) == 1


def test_robot_grants_stay_inside_the_organization(db: Database, acme: dict[str, Principal]):
    for args in (("other", None), (None, "other/x"), ("acmecorp", None), (None, "acmecorp/x")):
        with pytest.raises(AccountError, match="only be given access inside organization 'acme'"):
            db.run_sync(accounts.grant, "robot", "acme+ci", "read", *args)
    for subject, message in (("acme+nope", "no robot 'nope'"), ("nope+ci", "no organization"),
                             ("acme", "organization\\+name")):
        with pytest.raises(AccountError, match=message):
            db.run_sync(accounts.grant, "robot", subject, "read", "acme")
    found = db.run_sync(accounts.list_grants, "robot", "acme+ci")
    assert [(g.target, g.level_name) for g in found] == [("acme/app", "write"), ("other/*", "read")]
    db.run_sync(accounts.revoke, "robot", "acme+ci", None, "acme/app")
    assert level(db, acme["ci"], "acme/app") == NONE


def test_robot_readable_repositories(db: Database, acme: dict[str, Principal]):
    names = ["acme/app", "acme/lib", "acme/site", "other/x", "zeta/y"]
    assert db.run_sync(accounts.readable_repositories, acme["ci"], names) == ["acme/app", "acme/site"]
    assert db.run_sync(accounts.readable_repositories, acme["idle"], names) == ["acme/site"]
    db.run_sync(accounts.grant, "robot", "acme+idle", "read", "acme")
    assert db.run_sync(accounts.readable_repositories, acme["idle"], names) == ["acme/app", "acme/lib", "acme/site"]


def test_removing_a_robot(db: Database, acme: dict[str, Principal]):
    ci = acme["ci"]
    assert db.run_sync(credentials.credential_cap, f"robot:{ci.id}") == ADMIN
    db.run_sync(credentials.remove_robot, "acme", "ci")
    assert not db.run_sync(credentials.credential_active, f"robot:{ci.id}")
    assert db.run_sync(accounts.principal_by_id, "robot", ci.id) is None
    assert level(db, ci, "acme/app") == NONE and level(db, ci, "acme/site") == READ
    remaining = db.run_sync(lambda c: c.execute(sa.select(grants.c.subject_id).where(
        grants.c.subject_type == "robot")).scalars().all())
    assert ci.id not in remaining
    with pytest.raises(AccountError, match="no robot 'ci'"):
        db.run_sync(credentials.remove_robot, "acme", "ci")
    fullname, secret = db.run_sync(credentials.create_robot, "acme", "ci")
    again, _ = db.run_sync(credentials.authenticate_secret, fullname, secret)
    assert again.id > ci.id and level(db, again, "acme/app") == NONE  # a new robot inherits nothing


# -- the token service ----------------------------------------------------------------------


def _service(db: Database) -> AuthService:
    from cryptography.hazmat.primitives.asymmetric import ec

    return AuthService(db, TokenService(ec.generate_private_key(ec.SECP256R1()), "dockyard"))


def _scope(name: str, actions: str = "pull,push,delete") -> Access:
    return Access("repository", name, frozenset(actions.split(",")))


def test_login_tries_secrets_and_passwords(db: Database, monkeypatch: pytest.MonkeyPatch):
    alice = add_user(db, "alice", "dyp_1_looks-like-a-token")
    token_id, secret = db.run_sync(credentials.create_token, "alice", "ci")
    db.run_sync(accounts.create_org, "acme")
    fullname, robot_secret = db.run_sync(credentials.create_robot, "acme", "ci")
    verified: list[str] = []
    real_verify = passwords.verify
    monkeypatch.setattr(passwords, "verify", lambda h, p: verified.append(p) or real_verify(h, p))
    auth = _service(db)

    async def scenario() -> None:
        assert await auth.login("alice", secret) == (alice, f"pat:{token_id}")
        assert verified == []  # a matching token costs no argon2 verification
        assert await auth.login("alice", "dyp_1_looks-like-a-token") == (alice, None)  # falls back
        assert await auth.login("alice", "wrong") is None
        robot_login = await auth.login(fullname, robot_secret)
        assert robot_login is not None and robot_login[0].kind == "robot"
        verified.clear()
        assert await auth.login(fullname, "wrong") is None
        assert verified == []  # no user can be called acme+ci: no password check at all

    asyncio.run(scenario())


def test_grant_caps_a_token_at_its_scope(db: Database):
    alice = add_user(db, "alice")
    root = add_user(db, "root", is_admin=True)
    ids = {scope: db.run_sync(credentials.create_token, "alice", scope, scope)[0] for scope in credentials.SCOPES}
    root_read = db.run_sync(credentials.create_token, "root", "ro", "read")[0]
    auth = _service(db)

    async def actions(principal: Principal, credential: str | None, name: str) -> list[str]:
        granted = await auth.grant(principal, [_scope(name)], credential)
        return sorted(granted[0].actions) if granted else []

    async def scenario() -> None:
        assert await actions(alice, None, "alice/app") == ["delete", "pull", "push"]
        assert await actions(alice, f"pat:{ids['read']}", "alice/app") == ["pull"]
        assert await actions(alice, f"pat:{ids['read-write']}", "alice/app") == ["pull", "push"]
        assert await actions(alice, f"pat:{ids['admin']}", "alice/app") == ["delete", "pull", "push"]
        assert await actions(alice, f"pat:{ids['admin']}", "bob/app") == []  # never above the user
        assert await actions(root, f"pat:{root_read}", "bob/app") == ["pull"]  # nor above the scope
        db.run_sync(credentials.revoke_token, "alice", "admin")
        assert await actions(alice, f"pat:{ids['admin']}", "alice/app") == []
        catalog = await auth.grant(alice, [Access("registry", "catalog", frozenset({"*"}))], f"pat:{ids['read']}")
        assert catalog == [Access("registry", "catalog", frozenset({"*"}))]

    asyncio.run(scenario())


def test_refresh_refuses_a_dead_credential(db: Database):
    alice = add_user(db, "alice")
    token_id, _ = db.run_sync(credentials.create_token, "alice", "ci")
    db.run_sync(accounts.create_org, "acme")
    fullname, secret = db.run_sync(credentials.create_robot, "acme", "ci")
    bot, bot_credential = db.run_sync(credentials.authenticate_secret, fullname, secret)
    auth = _service(db)

    async def scenario() -> None:
        assert await auth.current(alice, f"pat:{token_id}") == alice
        assert await auth.current(bot, bot_credential) == bot
        db.run_sync(credentials.revoke_token, "alice", "ci")
        db.run_sync(credentials.remove_robot, "acme", "ci")
        assert await auth.current(alice, f"pat:{token_id}") is None
        assert await auth.current(alice, None) == alice  # the password login's refresh token still works
        assert await auth.current(bot, bot_credential) is None
        assert await auth.current(ANONYMOUS) is None

    asyncio.run(scenario())


def test_credential_checks_are_cached_briefly_and_shared(db: Database, monkeypatch: pytest.MonkeyPatch):
    add_user(db, "alice")
    token_id, _ = db.run_sync(credentials.create_token, "alice", "ci")
    credential = f"pat:{token_id}"
    auth = _service(db)
    lookups: list[str] = []
    real = credentials.credential_active

    def counting(conn: sa.Connection, cid: str) -> bool:
        lookups.append(cid)
        time.sleep(0.05)
        return real(conn, cid)

    monkeypatch.setattr(credentials, "credential_active", counting)
    now = [1000.0]
    auth._clock = lambda: now[0]

    async def scenario() -> None:
        assert all(await asyncio.gather(*(auth.credential_active(credential) for _ in range(20))))
        assert lookups == [credential]  # one query for a burst
        db.run_sync(credentials.revoke_token, "alice", "ci")
        now[0] += CREDENTIAL_CHECK_TTL - 0.01
        assert await auth.credential_active(credential)  # still the cached answer
        now[0] += 0.02
        assert not await auth.credential_active(credential)
        assert len(lookups) == 2
        assert not await auth.credential_active("pat:424242")

    asyncio.run(scenario())


def test_a_failed_credential_check_is_not_cached(db: Database, monkeypatch: pytest.MonkeyPatch):
    auth = _service(db)
    calls = []

    def failing(conn: sa.Connection, cid: str) -> bool:
        calls.append(cid)
        if len(calls) == 1:
            raise sa.exc.OperationalError("SELECT", {}, Exception("database is locked"))
        return True

    monkeypatch.setattr(credentials, "credential_active", failing)

    async def scenario() -> None:
        with pytest.raises(sa.exc.OperationalError):
            await auth.credential_active("pat:1")
        assert await auth.credential_active("pat:1")

    asyncio.run(scenario())


# -- migrations -------------------------------------------------------------------------------


def test_upgrade_from_0002_and_downgrade_back(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    engine.dispose()
    db = Database(url)
    try:
        db.migrate()
        add_user(db, "alice")
        db.run_sync(accounts.create_org, "acme")
        db.run_sync(credentials.create_token, "alice", "ci")
        db.run_sync(credentials.create_robot, "acme", "ci")
        db.run_sync(accounts.grant, "robot", "acme+ci", "read", "acme")
        db.run_sync(accounts.grant, "user", "alice", "read", "acme")
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0002")
        with db.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert "access_tokens" not in tables and "robots" not in tables
            subjects = conn.execute(sa.text("SELECT subject_type FROM grants")).scalars().all()
            assert subjects == ["user"]  # no grant is left pointing at a robot that no longer exists
        db.migrate()
        assert db.run_sync(credentials.list_robots, "acme") == []
    finally:
        db.close()


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for var in ("DATA_DIR", "CONFIG", "DATABASE_URL"):
        monkeypatch.delenv(f"DOCKYARD_{var}", raising=False)
    data = tmp_path / "data"
    runner = CliRunner()

    def invoke(group, *args: str, ok: bool = True):
        result = runner.invoke(group, [*args, "--data-dir", str(data)])
        assert (result.exit_code == 0) == ok, result.output
        return result

    invoke.data = data
    return invoke


def test_cli_tokens(cli):
    from dockyard.auth.cli import user

    cli(user, "add", "alice", "--password", "pw")
    created = cli(token, "create", "alice", "ci", "--scope", "read-write", "--expires-days", "30")
    secret = created.stdout.strip()
    assert secret.startswith("dyp_") and "\n" not in secret
    assert "shown once" in created.stderr and "read-write" in created.stderr
    assert cli(token, "create", "alice", "plain").stdout.startswith("dyp_")
    lines = [line.split("\t") for line in cli(token, "list", "alice").stdout.splitlines()]
    assert [(row[0], row[1], row[2], row[5]) for row in lines] == [("ci", "read-write", "active", "-"),
                                                                   ("plain", "read", "active", "-")]
    assert lines[0][4] != "-" and lines[1][4] == "-"
    assert "'write' is not one of" in cli(token, "create", "alice", "x", "--scope", "write", ok=False).output
    assert "already has a token" in cli(token, "create", "alice", "ci", ok=False).output
    assert "revoked token ci of alice" in cli(token, "revoke", "alice", "ci").stdout
    assert "\trevoked\t" in cli(token, "list", "alice").stdout
    assert "no unrevoked token" in cli(token, "revoke", "alice", "ci", ok=False).output
    db = Database(f"sqlite:///{cli.data / 'dockyard.db'}")
    try:
        assert db.run_sync(credentials.authenticate_secret, "alice", secret) is None
    finally:
        db.close()


def test_cli_robots(cli):
    from dockyard.auth.cli import org

    cli(org, "create", "acme")
    created = cli(robot, "create", "acme", "ci")
    fullname, secret = created.stdout.splitlines()
    assert fullname == "acme+ci" and secret.startswith("dyr_") and "shown once" in created.stderr
    assert "granted write on acme/app to robot acme+ci" in cli(robot, "grant", "acme", "ci", "write", "-r",
                                                               "acme/app").stdout
    cli(robot, "grant", "acme", "ci", "read", "--namespace", "acme")
    assert cli(robot, "grants", "acme", "ci").stdout == "acme/app\twrite\nacme/*\tread\n"
    assert "inside organization 'acme'" in cli(robot, "grant", "acme", "ci", "read", "-n", "other", ok=False).output
    cli(robot, "revoke", "acme", "ci", "-n", "acme")
    assert cli(robot, "list", "acme").stdout.startswith("acme+ci\t")
    db = Database(f"sqlite:///{cli.data / 'dockyard.db'}")
    try:
        principal, _ = db.run_sync(credentials.authenticate_secret, fullname, secret)
        assert level(db, principal, "acme/app") == WRITE and level(db, principal, "acme/lib") == NONE
        assert "removed robot acme+ci" in cli(robot, "remove", "acme", "ci").stdout
        assert db.run_sync(credentials.authenticate_secret, fullname, secret) is None
    finally:
        db.close()
    assert cli(robot, "list", "acme").stdout == ""
    assert "no robot 'ci'" in cli(robot, "remove", "acme", "ci", ok=False).output


def test_the_admin_groups_are_registered():
    from dockyard.cli import main

    assert {"token", "robot"} <= set(main.commands)


# -- end to end against a real server ------------------------------------------------------------

ADMIN_PASSWORD = "admin-secret-123"


class Registry:
    def __init__(self, server: RegistryServer) -> None:
        self.server = server
        self.url = server.url

    def cli(self, *args: str, ok: bool = True) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "dockyard", *args, "--data-dir", str(self.server.data_dir)],
            capture_output=True, text=True, timeout=60,
        )
        assert (out.returncode == 0) == ok, (args, out.stdout, out.stderr)
        return out.stdout

    def get_token(self, scopes: list[str], user: str | None = None, password: str | None = None) -> httpx.Response:
        auth = (user, password) if user else None
        return httpx.get(f"{self.url}/token", params={"service": "dockyard", "scope": scopes}, auth=auth)

    def token(self, scopes: list[str], user: str | None = None, password: str | None = None) -> str:
        r = self.get_token(scopes, user, password)
        assert r.status_code == 200, r.text
        return r.json()["token"]

    def oauth(self, user: str, password: str, scopes: list[str]) -> httpx.Response:
        return httpx.post(f"{self.url}/token", data={
            "grant_type": "password", "username": user, "password": password, "service": "dockyard",
            "scope": " ".join(scopes), "client_id": "test", "access_type": "offline"})

    def refresh(self, refresh_token: str, scopes: list[str]) -> httpx.Response:
        return httpx.post(f"{self.url}/token", data={
            "grant_type": "refresh_token", "refresh_token": refresh_token, "service": "dockyard",
            "scope": " ".join(scopes), "client_id": "test"})

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def new_token(self, user: str, name: str, *options: str) -> str:
        return self.cli("token", "create", user, name, *options).strip()

    def new_robot(self, org: str, name: str) -> tuple[str, str]:
        fullname, secret = self.cli("robot", "create", org, name).splitlines()
        return fullname, secret


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOCKYARD_AUTH", "token")
        mp.setenv("DOCKYARD_ADMIN_PASSWORD", ADMIN_PASSWORD)
        running = RegistryServer(tmp_path_factory.mktemp("credentials") / "data").start()
    registry = Registry(running)
    registry.cli("user", "add", "alice", "--password", "alice-pw-123")
    yield registry
    running.stop()


def _pull_push(name: str) -> str:
    return f"repository:{name}:pull,push"


def _granted(token: str) -> list[list[str]]:
    return [a["actions"] for a in jwt.decode(token, options={"verify_signature": False})["access"]]


def _push_as_alice(server: Registry, name: str) -> None:
    with server.client(server.token([_pull_push(name)], "alice", "alice-pw-123")) as c:
        push_image(c, name, "v1")


def test_a_read_token_pulls_but_does_not_push(server: Registry):
    name = f"alice/{repo('ro')}"
    _push_as_alice(server, name)
    secret = server.new_token("alice", repo("read"), "--scope", "read")
    token = server.token([_pull_push(name)], "alice", secret)
    assert _granted(token) == [["pull"]]
    with server.client(token) as c:
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
        r = c.post(f"/v2/{name}/blobs/uploads/")
        assert_error(r, 401, "UNAUTHORIZED")
        assert "insufficient_scope" in r.headers["WWW-Authenticate"]


def test_a_read_write_token_pushes(server: Registry):
    name = f"alice/{repo('rw')}"
    secret = server.new_token("alice", repo("rw"), "--scope", "read-write")
    token = server.token([f"repository:{name}:pull,push,delete"], "alice", secret)
    assert _granted(token) == [["pull", "push"]]
    with server.client(token) as c:
        push_image(c, name, "v1")
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200
    r = server.get_token([_pull_push(name)], "admin", secret)  # someone else's name
    assert_error(r, 401, "UNAUTHORIZED")


def test_an_expired_token_fails_at_the_token_endpoint(server: Registry):
    token_name = repo("exp")
    secret = server.new_token("alice", token_name, "--expires-days", "1")
    assert server.get_token([], "alice", secret).status_code == 200
    with sqlite3.connect(server.server.data_dir / "dockyard.db", timeout=30) as conn:
        conn.execute("UPDATE access_tokens SET expires_at = ? WHERE name = ?", (time.time() - 1, token_name))
    r = server.get_token([], "alice", secret)
    assert_error(r, 401, "UNAUTHORIZED")
    assert server.oauth("alice", secret, []).status_code == 401
    assert "\texpired\t" in server.cli("token", "list", "alice")


def test_revoking_a_token_stops_tokens_already_issued(server: Registry):
    name = f"alice/{repo('rev')}"
    token_name = repo("rev")
    secret = server.new_token("alice", token_name, "--scope", "read-write")
    r = server.oauth("alice", secret, [_pull_push(name)])
    assert r.status_code == 200, r.text
    issued = r.json()
    assert jwt.decode(issued["access_token"], options={"verify_signature": False})["dky"]["tok"].startswith("pat:")
    with server.client(issued["access_token"]) as c:
        push_image(c, name, "v1")
    refreshed = server.refresh(issued["refresh_token"], [_pull_push(name)])
    assert refreshed.status_code == 200 and _granted(refreshed.json()["access_token"]) == [["pull", "push"]]

    server.cli("token", "revoke", "alice", token_name)
    time.sleep(CREDENTIAL_CHECK_TTL)  # the longest a revocation may take to be noticed
    with server.client(issued["access_token"]) as c:
        r = c.get(f"/v2/{name}/manifests/v1")
        assert_error(r, 401, "UNAUTHORIZED")
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert_error(server.refresh(issued["refresh_token"], [_pull_push(name)]), 401, "UNAUTHORIZED")
    assert_error(server.get_token([], "alice", secret), 401, "UNAUTHORIZED")
    password_token = server.token([_pull_push(name)], "alice", "alice-pw-123")  # the password is unaffected
    with server.client(password_token) as c:
        assert c.get(f"/v2/{name}/manifests/v1").status_code == 200


def test_a_refreshed_token_keeps_the_cap(server: Registry):
    name = f"alice/{repo('cap')}"
    secret = server.new_token("alice", repo("cap"), "--scope", "read")
    issued = server.oauth("alice", secret, [_pull_push(name)]).json()
    assert _granted(issued["access_token"]) == [["pull"]]
    refreshed = server.refresh(issued["refresh_token"], [_pull_push(name)])
    assert refreshed.status_code == 200 and _granted(refreshed.json()["access_token"]) == [["pull"]]


def test_a_robot_pushes_where_granted_and_nowhere_else(server: Registry):
    org = repo("org")
    server.cli("org", "create", org)
    fullname, secret = server.new_robot(org, "ci")
    assert fullname == f"{org}+ci"
    target, sibling, elsewhere = f"{org}/app", f"{org}/other", f"alice/{repo('bot')}"
    server.cli("robot", "grant", org, "ci", "write", "--repository", target)
    token = server.token([_pull_push(target), _pull_push(sibling), _pull_push(elsewhere)], fullname, secret)
    assert jwt.decode(token, options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": target, "actions": ["pull", "push"]}]
    with server.client(token) as c:
        push_image(c, target, "v1")
        for name in (sibling, elsewhere):
            assert_error(c.post(f"/v2/{name}/blobs/uploads/"), 401, "UNAUTHORIZED")
    catalog = server.token(["registry:catalog:*"], fullname, secret)
    with server.client(catalog) as c:
        assert c.get("/v2/_catalog", params={"n": 10000}).json()["repositories"] == [target]
    bad = server.cli("robot", "grant", org, "ci", "write", "--namespace", "alice", ok=False)
    assert bad == ""


def test_a_removed_robot_fails(server: Registry):
    org = repo("gone")
    server.cli("org", "create", org)
    fullname, secret = server.new_robot(org, "ci")
    server.cli("robot", "grant", org, "ci", "write", "--namespace", org)
    name = f"{org}/app"
    issued = server.oauth(fullname, secret, [_pull_push(name)]).json()
    with server.client(issued["access_token"]) as c:
        push_image(c, name, "v1")
    server.cli("robot", "remove", org, "ci")
    assert_error(server.get_token([_pull_push(name)], fullname, secret), 401, "UNAUTHORIZED")
    time.sleep(CREDENTIAL_CHECK_TTL)
    with server.client(issued["access_token"]) as c:
        assert_error(c.get(f"/v2/{name}/manifests/v1"), 401, "UNAUTHORIZED")
    assert_error(server.refresh(issued["refresh_token"], [_pull_push(name)]), 401, "UNAUTHORIZED")
    # A robot re-created under the same name has a new secret and none of the old grants.
    fullname, new_secret = server.new_robot(org, "ci")
    assert_error(server.get_token([], fullname, secret), 401, "UNAUTHORIZED")
    assert _granted(server.token([_pull_push(name)], fullname, new_secret)) == []


def test_docker_login_with_a_robot(server: Registry):
    """``docker login -u org+ci``: a GET /token with basic credentials, the account and no scope,
    then the ping with the token it got."""
    org = repo("login")
    server.cli("org", "create", org)
    fullname, secret = server.new_robot(org, "ci")
    r = httpx.get(f"{server.url}/token", params={"account": fullname, "client_id": "docker",
                                                 "offline_token": "true", "service": "dockyard"},
                  auth=(fullname, secret))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["refresh_token"]
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == fullname and claims["dky"]["kind"] == "robot" and claims["dky"]["tok"].startswith("robot:")
    with server.client(body["token"]) as c:
        assert c.get("/v2/").status_code == 200
    r = httpx.get(f"{server.url}/token", params={"service": "dockyard"}, auth=(fullname, "wrong"))
    assert_error(r, 401, "UNAUTHORIZED")
    assert r.headers["WWW-Authenticate"].startswith("Basic ")


def test_a_password_that_looks_like_a_token_still_works(server: Registry):
    server.cli("user", "add", "dora", "--password", "dyp_1_not-really-a-token")
    assert server.get_token([], "dora", "dyp_1_not-really-a-token").status_code == 200
