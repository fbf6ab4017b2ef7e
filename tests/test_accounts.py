"""Accounts and the permission model (dockyard.auth.accounts / access / cli) on a real SQLite
database, migrated the way ``serve`` migrates it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from argon2 import PasswordHasher
from click.testing import CliRunner

from dockyard.auth import accounts, passwords
from dockyard.auth.accounts import AccountError
from dockyard.auth.cli import org, repo, team, user
from dockyard.auth.permissions import ADMIN, ANONYMOUS, DELETE, NONE, READ, WRITE, Principal
from dockyard.meta import store
from dockyard.meta.db import Database, alembic_config, create_engine
from dockyard.meta.tables import metadata, repositories, users
from tests.accounts_helpers import add_user, level
from tests.conftest import FAST_HASHER

pytestmark = pytest.mark.usefixtures("fast_hashing")


# -- passwords and login -------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_with_the_default_parameters(db: Database, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher())
    alice = add_user(db, "alice", "s3cret")
    stored = db.run_sync(lambda c: c.execute(sa.select(users.c.password_hash)).scalar_one())
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and "s3cret" not in stored
    assert db.run_sync(accounts.authenticate_password, "alice", "s3cret") == alice


def test_authenticate_password(db: Database):
    alice = add_user(db, "alice", "right")
    add_user(db, "root", "pw", is_admin=True)
    assert db.run_sync(accounts.authenticate_password, "alice", "right") == Principal("user", alice.id, "alice", False)
    assert db.run_sync(accounts.authenticate_password, "root", "pw").is_admin
    assert db.run_sync(accounts.authenticate_password, "alice", "wrong") is None
    assert db.run_sync(accounts.authenticate_password, "alice", "") is None
    assert db.run_sync(accounts.authenticate_password, "nobody", "right") is None
    db.run_sync(accounts.set_disabled, "alice", True)
    assert db.run_sync(accounts.authenticate_password, "alice", "right") is None
    db.run_sync(accounts.set_disabled, "alice", False)
    db.run_sync(accounts.set_password, "alice", "new")
    assert db.run_sync(accounts.authenticate_password, "alice", "right") is None
    assert db.run_sync(accounts.authenticate_password, "alice", "new") == alice


def test_every_failed_login_costs_one_hash_verification(db: Database, monkeypatch: pytest.MonkeyPatch):
    """Unknown names, wrong passwords and disabled users all pay for a verification, so the
    response time does not tell which user names exist."""
    add_user(db, "alice", "right")
    add_user(db, "bob", "right")
    db.run_sync(accounts.set_disabled, "bob", True)
    calls: list[str] = []
    real_verify = passwords.verify

    def spy(password_hash: str, password: str) -> bool:
        calls.append(password)
        return real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "verify", spy)
    for name, password in [("nobody", "a"), ("alice", "b"), ("bob", "right"), ("Not A Name", "d")]:
        calls.clear()
        assert db.run_sync(accounts.authenticate_password, name, password) is None
        assert calls == [password], name


def test_login_rehashes_a_hash_made_with_old_parameters(db: Database):
    add_user(db, "alice", "pw")
    old = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1).hash("pw")
    db.run_sync(lambda c: c.execute(sa.update(users).values(password_hash=old)))
    assert db.run_sync(accounts.authenticate_password, "alice", "wrong") is None
    assert db.run_sync(lambda c: c.execute(sa.select(users.c.password_hash)).scalar_one()) == old
    assert db.run_sync(accounts.authenticate_password, "alice", "pw") is not None
    new = db.run_sync(lambda c: c.execute(sa.select(users.c.password_hash)).scalar_one())
    assert new != old and not FAST_HASHER.check_needs_rehash(new)
    assert db.run_sync(accounts.authenticate_password, "alice", "pw") is not None


def test_principal_by_id_reflects_the_account_as_it_is_now(db: Database):
    alice = add_user(db, "alice")
    assert db.run_sync(accounts.principal_by_id, "user", alice.id) == alice
    assert db.run_sync(accounts.principal_by_id, "robot", alice.id) is None
    assert db.run_sync(accounts.principal_by_id, "anonymous", None) is None
    db.run_sync(accounts.set_disabled, "alice", True)
    assert db.run_sync(accounts.principal_by_id, "user", alice.id) is None
    db.run_sync(accounts.remove_user, "alice")
    assert db.run_sync(accounts.principal_by_id, "user", alice.id) is None


def test_a_corrupt_stored_hash_fails_login_without_crashing(db: Database):
    add_user(db, "alice", "pw")
    db.run_sync(lambda c: c.execute(sa.update(users).values(password_hash="not a hash")))
    assert db.run_sync(accounts.authenticate_password, "alice", "pw") is None


def test_ensure_admin_generates_a_password_once(db: Database):
    generated = db.run_sync(accounts.ensure_admin, None)
    assert generated and len(generated) >= 20
    admin = db.run_sync(accounts.authenticate_password, "admin", generated)
    assert admin is not None and admin.is_admin
    assert db.run_sync(accounts.ensure_admin, None) is None
    assert db.run_sync(accounts.ensure_admin, "other") is None
    assert db.run_sync(accounts.authenticate_password, "admin", "other") is None


@pytest.mark.parametrize("given", ["from-env", ""])
def test_ensure_admin_with_a_given_password(db: Database, given: str):
    result = db.run_sync(accounts.ensure_admin, given)
    if given:
        assert result is None
        assert db.run_sync(accounts.authenticate_password, "admin", "from-env").is_admin
    else:  # an empty DOCKYARD_ADMIN_PASSWORD counts as unset
        assert result and db.run_sync(accounts.authenticate_password, "admin", result).is_admin


def test_user_management(db: Database):
    add_user(db, "alice")
    add_user(db, "root", is_admin=True)
    db.run_sync(accounts.set_disabled, "alice", True)
    listed = [(u.name, u.is_admin, u.disabled) for u in db.run_sync(accounts.list_users)]
    assert listed == [("alice", False, True), ("root", True, False)]
    with pytest.raises(AccountError, match="taken by a user"):
        add_user(db, "alice")
    with pytest.raises(AccountError, match="no user named 'zed'"):
        db.run_sync(accounts.set_password, "zed", "pw")
    with pytest.raises(AccountError, match="empty"):
        db.run_sync(accounts.set_password, "alice", "")
    with pytest.raises(AccountError, match="empty"):
        add_user(db, "bob", "")
    db.run_sync(accounts.remove_user, "alice")
    assert [u.name for u in db.run_sync(accounts.list_users)] == ["root"]
    with pytest.raises(AccountError, match="no user"):
        db.run_sync(accounts.remove_user, "alice")


@pytest.mark.parametrize(
    "name", ["", "Alice", "-alice", "alice-", "a..b", "a___b", "a/b", "al ice", "ümlaut", "a" * 65, None]
)
def test_invalid_names_are_rejected(db: Database, name):
    with pytest.raises(AccountError, match="invalid user name"):
        add_user(db, name)
    with pytest.raises(AccountError, match="invalid organization name"):
        db.run_sync(accounts.create_org, name)


@pytest.mark.parametrize("name", ["a", "alice", "a.b", "a_b", "a__b", "a--b", "x1-2.3", "a" * 64])
def test_valid_names(db: Database, name: str):
    add_user(db, name)


# -- organizations, teams, grants ----------------------------------------------------------


def test_user_and_organization_names_share_one_namespace(db: Database):
    add_user(db, "alice")
    db.run_sync(accounts.create_org, "acme")
    with pytest.raises(AccountError, match="taken by a user"):
        db.run_sync(accounts.create_org, "alice")
    with pytest.raises(AccountError, match="taken by an organization"):
        add_user(db, "acme")
    with pytest.raises(AccountError, match="taken by an organization"):
        db.run_sync(accounts.create_org, "acme")
    assert db.run_sync(accounts.list_orgs) == ["acme"]


def test_teams_and_members(db: Database):
    add_user(db, "alice")
    add_user(db, "bob")
    db.run_sync(accounts.create_org, "acme")
    db.run_sync(accounts.create_org, "other")
    db.run_sync(accounts.create_team, "acme", "devs")
    db.run_sync(accounts.create_team, "acme", "ops")
    db.run_sync(accounts.create_team, "other", "devs")  # team names are per organization
    with pytest.raises(AccountError, match="already has a team 'devs'"):
        db.run_sync(accounts.create_team, "acme", "devs")
    with pytest.raises(AccountError, match="no organization named 'nope'"):
        db.run_sync(accounts.create_team, "nope", "devs")
    with pytest.raises(AccountError, match="invalid team name"):
        db.run_sync(accounts.create_team, "acme", "Dev Team")
    db.run_sync(accounts.add_member, "acme", "devs", "bob")
    db.run_sync(accounts.add_member, "acme", "devs", "alice")
    db.run_sync(accounts.add_member, "acme", "devs", "alice")  # twice is fine
    assert db.run_sync(accounts.list_teams, "acme") == {"devs": ["alice", "bob"], "ops": []}
    with pytest.raises(AccountError, match="no team 'qa'"):
        db.run_sync(accounts.add_member, "acme", "qa", "bob")
    with pytest.raises(AccountError, match="no user named 'zed'"):
        db.run_sync(accounts.add_member, "acme", "devs", "zed")
    db.run_sync(accounts.remove_member, "acme", "devs", "alice")
    with pytest.raises(AccountError, match="not a member"):
        db.run_sync(accounts.remove_member, "acme", "devs", "alice")
    assert db.run_sync(accounts.list_teams, "acme") == {"devs": ["bob"], "ops": []}


def test_grants(db: Database):
    add_user(db, "alice")
    db.run_sync(accounts.create_org, "acme")
    db.run_sync(accounts.create_team, "acme", "devs")
    db.run_sync(accounts.grant, "user", "alice", "read", None, "acme/app")
    db.run_sync(accounts.grant, "user", "alice", "WRITE", "acme", None)
    db.run_sync(accounts.grant, "user", "alice", "delete", None, "acme/app")  # replaces the read
    db.run_sync(accounts.grant, "team", "acme/devs", "admin", "acme")
    found = db.run_sync(accounts.list_grants, "user", "alice")
    assert [(g.target, g.level_name) for g in found] == [("acme/app", "delete"), ("acme/*", "write")]
    assert [(g.target, g.level) for g in db.run_sync(accounts.list_grants, "team", "acme/devs")] == [("acme/*", ADMIN)]
    db.run_sync(accounts.grant, "user", "alice", "read", None, "acme/app")  # and can lower it
    assert db.run_sync(accounts.list_grants, "user", "alice")[0].level == READ

    db.run_sync(accounts.revoke, "user", "alice", None, "acme/app")
    assert [g.target for g in db.run_sync(accounts.list_grants, "user", "alice")] == ["acme/*"]
    with pytest.raises(AccountError, match="has no grant"):
        db.run_sync(accounts.revoke, "user", "alice", None, "acme/app")

    bad = [
        (("user", "alice", "superuser", "acme", None), "unknown level"),
        (("user", "alice", "read", None, None), "exactly one"),
        (("user", "alice", "read", "acme", "acme/app"), "exactly one"),
        (("user", "alice", "read", None, "Acme/App"), "invalid repository name"),
        (("user", "alice", "read", "a/b", None), "invalid namespace"),
        (("user", "zed", "read", "acme", None), "no user named 'zed'"),
        (("team", "devs", "read", "acme", None), "organization/team"),
        (("team", "acme/qa", "read", "acme", None), "no team 'qa'"),
        (("group", "x", "read", "acme", None), "'user', a 'team' or a 'robot'"),
    ]
    for args, message in bad:
        with pytest.raises(AccountError, match=message):
            db.run_sync(accounts.grant, *args)


def test_grant_uniqueness_is_enforced_by_the_schema(db: Database):
    """The partial unique indexes catch what a plain UNIQUE with a NULL column would not."""
    alice = add_user(db, "alice")
    row = {"subject_type": "user", "subject_id": alice.id, "level": READ}
    from dockyard.meta.tables import grants

    db.run_sync(lambda c: c.execute(sa.insert(grants).values(**row, namespace="acme")))
    db.run_sync(lambda c: c.execute(sa.insert(grants).values(**row, repository="acme")))  # a different target
    for target in ({"namespace": "acme"}, {"repository": "acme"}):
        with pytest.raises(sa.exc.IntegrityError):
            db.run_sync(lambda c, t=target: c.execute(sa.insert(grants).values(**row, **t)))
    with pytest.raises(sa.exc.IntegrityError):  # neither target, or both
        db.run_sync(lambda c: c.execute(sa.insert(grants).values(**row)))
    with pytest.raises(sa.exc.IntegrityError):
        db.run_sync(lambda c: c.execute(sa.insert(grants).values(**row, namespace="x", repository="x/y")))


def test_removing_a_user_removes_their_memberships_and_grants(db: Database):
    add_user(db, "alice")
    db.run_sync(accounts.create_org, "acme")
    db.run_sync(accounts.create_team, "acme", "devs")
    db.run_sync(accounts.add_member, "acme", "devs", "alice")
    db.run_sync(accounts.grant, "user", "alice", "write", "acme")
    db.run_sync(accounts.remove_user, "alice")
    again = add_user(db, "alice")
    assert db.run_sync(accounts.list_grants, "user", "alice") == []
    assert db.run_sync(accounts.list_teams, "acme") == {"devs": []}
    assert level(db, again, "acme/app") == NONE


# -- the permission model ------------------------------------------------------------------


@pytest.fixture
def world(db: Database) -> dict[str, Principal]:
    """root (site admin); alice and bob in acme/devs (write on acme/*); carol with read on
    acme/app only; dave with nothing; repositories acme/app, acme/lib (private), acme/site
    (public), alice/tool (private)."""
    people = {
        "root": add_user(db, "root", is_admin=True),
        "alice": add_user(db, "alice"),
        "bob": add_user(db, "bob"),
        "carol": add_user(db, "carol"),
        "dave": add_user(db, "dave"),
    }
    db.run_sync(accounts.create_org, "acme")
    db.run_sync(accounts.create_team, "acme", "devs")
    for name in ("alice", "bob"):
        db.run_sync(accounts.add_member, "acme", "devs", name)
    db.run_sync(accounts.grant, "team", "acme/devs", "write", "acme")
    db.run_sync(accounts.grant, "user", "carol", "read", None, "acme/app")
    for name in ("acme/app", "acme/lib", "acme/site", "alice/tool"):
        db.run_sync(store.ensure_repository, name)
    db.run_sync(accounts.set_visibility, "acme/site", True)
    return people


def test_repository_level(db: Database, world: dict[str, Principal]):
    root, alice, bob, carol, dave = (world[n] for n in ("root", "alice", "bob", "carol", "dave"))
    robot = Principal("robot", 1, "acme+ci")
    expected = {
        # repository:  root   alice  bob    carol  dave   anonymous robot
        "acme/app": (ADMIN, WRITE, WRITE, READ, NONE, NONE, NONE),
        "acme/lib": (ADMIN, WRITE, WRITE, NONE, NONE, NONE, NONE),
        "acme/site": (ADMIN, WRITE, WRITE, READ, READ, READ, READ),  # public
        "acme/new/deep": (ADMIN, WRITE, WRITE, NONE, NONE, NONE, NONE),  # does not exist yet
        "acme": (ADMIN, WRITE, WRITE, NONE, NONE, NONE, NONE),  # one component: its own namespace
        "acmecorp/app": (ADMIN, NONE, NONE, NONE, NONE, NONE, NONE),  # not a prefix match
        "alice/tool": (ADMIN, ADMIN, NONE, NONE, NONE, NONE, NONE),  # alice owns alice/*
        "alice/new": (ADMIN, ADMIN, NONE, NONE, NONE, NONE, NONE),
        "bob/x": (ADMIN, NONE, ADMIN, NONE, NONE, NONE, NONE),
    }
    who = (root, alice, bob, carol, dave, ANONYMOUS, robot)
    for repository, levels in expected.items():
        got = tuple(level(db, p, repository) for p in who)
        assert got == levels, repository


def test_the_highest_grant_wins(db: Database, world: dict[str, Principal]):
    bob, carol = world["bob"], world["carol"]
    db.run_sync(accounts.grant, "user", "bob", "delete", None, "acme/app")
    assert level(db, bob, "acme/app") == DELETE
    assert level(db, bob, "acme/lib") == WRITE
    db.run_sync(accounts.grant, "user", "carol", "write", None, "acme/site")
    assert level(db, carol, "acme/site") == WRITE  # a grant above the public READ
    db.run_sync(accounts.create_team, "acme", "ops")
    db.run_sync(accounts.add_member, "acme", "ops", "bob")
    db.run_sync(accounts.grant, "team", "acme/ops", "admin", None, "acme/lib")
    assert level(db, bob, "acme/lib") == ADMIN
    db.run_sync(accounts.remove_member, "acme", "devs", "bob")
    assert level(db, bob, "acme/app") == DELETE
    assert level(db, bob, "acme/other") == NONE


def test_the_database_not_the_principal_decides(db: Database, world: dict[str, Principal]):
    """Disabling a user, or removing them, takes effect at once, even with a token issued
    before; an ``is_admin`` claim the user row does not back gives nothing."""
    bob = world["bob"]
    assert level(db, Principal("user", bob.id, "bob", is_admin=True), "acme/app") == WRITE
    db.run_sync(accounts.set_disabled, "bob", True)
    assert level(db, bob, "acme/app") == NONE
    assert level(db, bob, "bob/x") == NONE
    assert level(db, bob, "acme/site") == READ  # what anybody gets
    assert db.run_sync(accounts.readable_repositories, bob, ["acme/app", "acme/site"]) == ["acme/site"]
    db.run_sync(accounts.remove_user, "bob")
    assert level(db, bob, "acme/app") == NONE
    assert level(db, bob, "acme/site") == READ


def test_can_create(db: Database, world: dict[str, Principal]):
    assert db.run_sync(accounts.can_create, world["alice"], "acme/brand-new")
    assert db.run_sync(accounts.can_create, world["dave"], "dave/mine")
    assert not db.run_sync(accounts.can_create, world["carol"], "acme/brand-new")
    assert not db.run_sync(accounts.can_create, world["carol"], "acme/app")  # read only
    assert not db.run_sync(accounts.can_create, ANONYMOUS, "acme/site")
    db.run_sync(store.ensure_repository, "dave/mine")  # what a push does
    assert db.run_sync(lambda c: c.execute(sa.select(repositories.c.visibility).where(
        repositories.c.name == "dave/mine")).scalar_one()) == "private"
    assert level(db, ANONYMOUS, "dave/mine") == NONE


def test_visibility(db: Database, world: dict[str, Principal]):
    assert level(db, ANONYMOUS, "acme/app") == NONE
    db.run_sync(accounts.set_visibility, "acme/app", True)
    assert level(db, ANONYMOUS, "acme/app") == READ
    assert level(db, world["dave"], "acme/app") == READ
    db.run_sync(accounts.set_visibility, "acme/app", False)
    assert level(db, ANONYMOUS, "acme/app") == NONE
    with pytest.raises(AccountError, match="no repository named 'acme/none'"):
        db.run_sync(accounts.set_visibility, "acme/none", True)


def test_namespace_of():
    assert accounts.namespace_of("acme/app") == "acme"
    assert accounts.namespace_of("acme/a/b") == "acme"
    assert accounts.namespace_of("ubuntu") == "ubuntu"


def test_readable_repositories(db: Database, world: dict[str, Principal]):
    names = ["alice/tool", "acme/site", "bob/x", "acme/app", "acme/lib", "zeta/a", "acme/app"]
    readable = {
        "root": names,
        "alice": ["alice/tool", "acme/site", "acme/app", "acme/lib", "acme/app"],
        "bob": ["acme/site", "bob/x", "acme/app", "acme/lib", "acme/app"],
        "carol": ["acme/site", "acme/app", "acme/app"],
        "dave": ["acme/site"],
    }
    for name, expected in readable.items():
        assert db.run_sync(accounts.readable_repositories, world[name], names) == expected, name
    assert db.run_sync(accounts.readable_repositories, ANONYMOUS, names) == ["acme/site"]
    assert db.run_sync(accounts.readable_repositories, ANONYMOUS, []) == []


def test_readable_repositories_does_not_query_per_name(db: Database, world: dict[str, Principal]):
    names = [f"pub/r{i:04d}" for i in range(1200)]
    db.run_sync(lambda c: c.execute(sa.insert(repositories), [{"name": n, "created_at": 0.0} for n in names]))
    public = names[::100]
    for name in public:
        db.run_sync(accounts.set_visibility, name, True)
    statements: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    assert db.run_sync(accounts.readable_repositories, world["carol"], names) == public
    assert len(statements) <= 2 + 3  # the user row, their grants, the public ones in chunks of 500
    statements.clear()
    assert db.run_sync(accounts.repository_level, world["carol"], "acme/app") == READ
    assert len(statements) == 1


# -- migrations ----------------------------------------------------------------------------


def test_upgrading_from_0001_keeps_repositories_private(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(sa.text("INSERT INTO repositories (name, created_at) VALUES ('old/one', 1), ('old/two', 2)"))
        conn.execute(sa.text("INSERT INTO manifests (digest, media_type, size, content, created_at) "
                             "VALUES ('sha256:aa', 'm', 2, x'7b7d', 1)"))
        conn.execute(sa.text("INSERT INTO tags (repository_id, name, digest, updated_at) "
                             "VALUES (1, 'v1', 'sha256:aa', 1)"))
    engine.dispose()
    db = Database(url)
    try:
        db.migrate()
        rows = db.run_sync(lambda c: c.execute(sa.select(repositories.c.name, repositories.c.visibility)).all())
        assert sorted(rows) == [("old/one", "private"), ("old/two", "private")]
        assert db.run_sync(store.list_tags, "old/one", None, None) == ["v1"]
        assert level(db, ANONYMOUS, "old/one") == NONE
        generated = db.run_sync(accounts.ensure_admin, None)
        assert db.run_sync(accounts.authenticate_password, "admin", generated).is_admin
    finally:
        db.close()


def test_downgrade_to_0001_and_back(tmp_path: Path):
    """Downgrading drops the account tables and the column in place: with foreign keys on, a
    batch copy of ``repositories`` would fail because tags and links reference it."""
    db = Database(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        db.migrate()
        db.run_sync(store.put_manifest, "keep/me", {"digest": "sha256:" + "a" * 64, "media_type": "m", "size": 2,
                                                    "content": b"{}"}, [], ["v1"])
        db.run_sync(accounts.set_visibility, "keep/me", True)
        with db.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
        with db.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert "users" not in tables and "grants" not in tables
            assert "visibility" not in {c["name"] for c in sa.inspect(conn).get_columns("repositories")}
        db.migrate()
        assert db.run_sync(store.list_tags, "keep/me", None, None) == ["v1"]
        assert level(db, ANONYMOUS, "keep/me") == NONE  # back to the default
    finally:
        db.close()


def test_migrations_match_the_table_definitions(db: Database):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


# -- the command line ----------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for var in ("DATA_DIR", "CONFIG", "DATABASE_URL"):
        monkeypatch.delenv(f"DOCKYARD_{var}", raising=False)
    data = tmp_path / "data"
    runner = CliRunner()

    def invoke(group, *args: str, input: str | None = None, ok: bool = True):
        result = runner.invoke(group, [*args, "--data-dir", str(data)], input=input)
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    invoke.data = data
    return invoke


def _open(data: Path) -> Database:
    return Database(f"sqlite:///{data / 'dockyard.db'}")


def test_cli_users(cli):
    assert "created user alice" in cli(user, "add", "alice", input="pw1\npw1\n")
    assert "site admin" in cli(user, "add", "root", "--password", "pw", "--admin")
    assert cli(user, "list") == "alice\nroot\tadmin\n"
    assert "taken by a user" in cli(user, "add", "alice", "--password", "x", ok=False)
    assert "invalid user name" in cli(user, "add", "Alice", "--password", "x", ok=False)
    assert "do not match" in cli(user, "add", "bob", input="a\nb\na\na\n")  # the prompt asks again
    cli(user, "passwd", "alice", input="pw2\npw2\n")
    cli(user, "disable", "bob")
    assert "bob\tdisabled" in cli(user, "list")
    db = _open(cli.data)
    try:
        assert db.run_sync(accounts.authenticate_password, "alice", "pw2") is not None
        assert db.run_sync(accounts.authenticate_password, "root", "pw").is_admin
        assert db.run_sync(accounts.authenticate_password, "bob", "a") is None
        cli(user, "enable", "bob")
        assert db.run_sync(accounts.authenticate_password, "bob", "a") is not None
        cli(user, "remove", "alice")
        assert "no user named 'alice'" in cli(user, "passwd", "alice", "--password", "x", ok=False)
        assert [u.name for u in db.run_sync(accounts.list_users)] == ["bob", "root"]
    finally:
        db.close()


def test_cli_orgs_teams_grants_and_visibility(cli):
    cli(user, "add", "bob", "--password", "pw")
    cli(user, "add", "carol", "--password", "pw")
    assert "created organization acme" in cli(org, "create", "acme")
    assert "taken by a user" in cli(org, "create", "bob", ok=False)
    assert cli(org, "list") == "acme\n"
    cli(team, "create", "acme", "devs")
    cli(team, "add-member", "acme", "devs", "bob")
    assert cli(team, "list", "acme") == "devs\tbob\n"
    assert "granted write on acme/* to team acme/devs" in cli(team, "grant", "acme", "devs", "write", "--namespace",
                                                               "acme")
    assert cli(team, "grants", "acme", "devs") == "acme/*\twrite\n"
    cli(user, "grant", "carol", "READ", "--repository", "acme/app")
    assert cli(user, "grants", "carol") == "acme/app\tread\n"
    assert "exactly one" in cli(team, "grant", "acme", "devs", "read", ok=False)
    assert "exactly one" in cli(team, "grant", "acme", "devs", "read", "-n", "acme", "-r", "acme/x", ok=False)
    assert "'owner' is not one of" in cli(team, "grant", "acme", "devs", "owner", "-n", "acme", ok=False)
    assert "no repository named 'acme/app'" in cli(repo, "visibility", "acme/app", "public", ok=False)

    db = _open(cli.data)
    try:
        db.run_sync(store.ensure_repository, "acme/app")
        assert "acme/app is now public" in cli(repo, "visibility", "acme/app", "public")
        bob = db.run_sync(accounts.authenticate_password, "bob", "pw")
        carol = db.run_sync(accounts.authenticate_password, "carol", "pw")
        assert level(db, bob, "acme/app") == WRITE
        assert level(db, carol, "acme/app") == READ
        assert level(db, ANONYMOUS, "acme/app") == READ
        cli(user, "revoke", "carol", "-r", "acme/app")
        cli(team, "revoke", "acme", "devs", "-n", "acme")
        cli(team, "remove-member", "acme", "devs", "bob")
        cli(repo, "visibility", "acme/app", "private")
        assert level(db, bob, "acme/app") == NONE
        assert level(db, carol, "acme/app") == NONE
        assert "has no grant" in cli(user, "revoke", "carol", "-r", "acme/app", ok=False)
    finally:
        db.close()


def test_cli_finds_the_data_folder_through_the_group_option_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for var in ("DATA_DIR", "CONFIG", "DATABASE_URL"):
        monkeypatch.delenv(f"DOCKYARD_{var}", raising=False)
    runner = CliRunner()
    first, second = tmp_path / "first", tmp_path / "second"
    assert runner.invoke(user, ["--data-dir", str(first), "add", "alice", "--password", "pw"]).exit_code == 0
    monkeypatch.setenv("DOCKYARD_DATA_DIR", str(second))
    assert runner.invoke(user, ["add", "bob", "--password", "pw"]).exit_code == 0
    assert runner.invoke(user, ["list"]).output == "bob\n"
    assert runner.invoke(user, ["--data-dir", str(first), "list"]).output == "alice\n"
    toml = tmp_path / "dockyard.toml"
    toml.write_text(f'data_dir = "{first}"\n')
    monkeypatch.delenv("DOCKYARD_DATA_DIR")
    assert runner.invoke(user, ["list", "--config", str(toml)]).output == "alice\n"
    bad = runner.invoke(user, ["list", "--config", str(tmp_path / "missing.toml")])
    assert bad.exit_code == 1 and "cannot read config" in bad.output
