"""`labtrain users ...` run as real commands against a fresh PostgreSQL database."""

from __future__ import annotations

import pytest

from service.core.db import Database
from service.lab.users import user_for_token
from tests.support.processes import run_cli, service_env


@pytest.fixture(scope="module")
def cli(make_pg_database, tmp_path_factory):
    """Runs `labtrain ARGS` on a freshly migrated database; returns the finished process."""
    env = service_env(tmp_path_factory.mktemp("home"), LABTRAIN_DATABASE_URL=make_pg_database())
    upgraded = run_cli(["db", "upgrade"], env)
    assert upgraded.returncode == 0, upgraded.stderr

    def run(*args: str):
        return run_cli(list(args), env)

    run.database_url = env["LABTRAIN_DATABASE_URL"]
    return run


@pytest.fixture(scope="module")
def owner_of(cli):
    """The name of the enabled user a token belongs to, or None."""
    database = Database(cli.database_url)

    def lookup(token: str) -> str | None:
        with database.session() as session:
            user = user_for_token(session, token)
            return None if user is None else user.name

    yield lookup
    database.dispose()


def create(cli, name: str, *flags: str) -> str:
    result = cli("users", "create", name, *flags)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"  # the token alone, so scripts can capture it
    return token


def assert_fails(result, *words: str) -> None:
    assert result.returncode != 0 and result.stdout == ""
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_create_prints_a_token_that_authenticates(cli, owner_of, tmp_path, redis_url):
    from service.api import create_app
    from service.core.config import Settings

    token = create(cli, "ann")
    assert token.startswith("lt_") and len(token) > 40
    assert owner_of(token) == "ann"
    assert owner_of(token + "x") is None

    app = create_app(
        Settings(
            home=tmp_path,
            database_url=cli.database_url,
            broker_url=redis_url,
            data_dir=tmp_path / "datasets",
            artifact_dir=tmp_path / "artifacts",
        )
    )
    try:
        client = app.test_client()
        assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer lt_nope"}).status_code == 401
    finally:
        app.extensions["labtrain"].db.dispose()


def test_tokens_are_random_and_stored_hashed(cli):
    from sqlalchemy import select

    from service.core.orm import User

    tokens = [create(cli, "hash1"), create(cli, "hash2")]
    assert tokens[0] != tokens[1]
    database = Database(cli.database_url)
    try:
        with database.session() as session:
            stored = set(session.scalars(select(User.token_hash)))
    finally:
        database.dispose()
    assert not stored & set(tokens)


def test_create_admin_and_list(cli):
    create(cli, "boss", "--admin")
    create(cli, "plain")
    listed = {line.split("\t")[0]: line.split("\t")[1] for line in cli("users", "list").stdout.splitlines()}
    assert listed["boss"] == "admin" and listed["plain"] == "-"


def test_duplicate_create_fails(cli, owner_of):
    token = create(cli, "dup")
    assert_fails(cli("users", "create", "dup"), "dup", "exists")
    assert owner_of(token) == "dup"  # the first user's token still works


@pytest.mark.parametrize("name", ["", " padded", "x" * 65, "tab\there"])
def test_bad_names_are_refused(cli, name):
    assert_fails(cli("users", "create", name), "user name")


def test_rotate_prints_a_new_token_and_ends_the_old_one(cli, owner_of):
    old = create(cli, "rot")
    result = cli("users", "token", "rot", "--rotate")
    assert result.returncode == 0, result.stderr
    new = result.stdout.strip()
    assert result.stdout == new + "\n" and new != old
    assert owner_of(new) == "rot" and owner_of(old) is None


def test_token_without_rotate_explains_and_changes_nothing(cli, owner_of):
    token = create(cli, "norot")
    assert_fails(cli("users", "token", "norot"), "hashed", "--rotate")
    assert owner_of(token) == "norot"


def test_disable_and_enable(cli, owner_of):
    token = create(cli, "dis")
    for args, expected in [
        (("disable", "dis"), None),
        (("disable", "dis"), None),
        (("enable", "dis"), "dis"),
        (("enable", "dis"), "dis"),
    ]:
        result = cli("users", *args)
        assert result.returncode == 0 and result.stdout == "", result.stderr
        assert owner_of(token) == expected, args
    cli("users", "disable", "dis")
    assert (
        "disabled"
        in {line.split("\t")[0]: line.split("\t")[1] for line in cli("users", "list").stdout.splitlines()}["dis"]
    )
    rotated = cli("users", "token", "dis", "--rotate")
    assert rotated.returncode == 0 and "disabled" in rotated.stderr
    assert owner_of(rotated.stdout.strip()) is None  # still disabled until enabled


@pytest.mark.parametrize(
    "args", [("token", "ghost", "--rotate"), ("token", "ghost"), ("disable", "ghost"), ("enable", "ghost")]
)
def test_unknown_users_are_a_clear_error(cli, args):
    assert_fails(cli("users", *args), "no user named 'ghost'")


def test_limits_are_shown_overridden_audited_and_reset(tmp_path, make_pg_database):
    from service.core.db import Database
    from service.core.orm import AuditEntry

    url = make_pg_database()
    env = service_env(tmp_path, LABTRAIN_DATABASE_URL=url)
    assert run_cli(["db", "upgrade"], env).returncode == 0
    assert run_cli(["users", "create", "dora"], env).returncode == 0
    shown = run_cli(["users", "limits", "dora"], env)
    assert "max_queued\t20\tdefault" in shown.stdout
    changed = run_cli(["users", "limits", "dora", "--max-queued", "40", "--max-running-gpu", "2", "--by", "prof"], env)
    assert changed.returncode == 0, changed.stderr
    assert "max_queued\t40\toverride" in changed.stdout and "max_running_gpu\t2\toverride" in changed.stdout
    assert run_cli(["users", "limits", "dora", "--max-queued", "-1"], env).returncode != 0
    reset = run_cli(["users", "limits", "dora", "--reset"], env)
    assert "max_queued\t20\tdefault" in reset.stdout
    database = Database(url)
    with database.session() as session:
        audit = [(a.actor, a.action, a.target) for a in session.query(AuditEntry).order_by(AuditEntry.id)]
    database.dispose()
    assert audit[0] == ("prof", "set_limits", "dora") and len(audit) == 2
