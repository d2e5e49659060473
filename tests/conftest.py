"""Shared fixtures. Tests use the real PostgreSQL and Redis: when either does not answer,
the tests fail (they never skip).

The fast tier (`make test-fast`, LABTRAIN_TEST_SERVERS=none) runs the tests marked `fast`
on a temporary SQLite database and the serverless broker, with no server at all; `make
test` runs every test, the fast ones included, against the real servers. A fast test that
asks for PostgreSQL or Redis itself fails, saying so."""

from __future__ import annotations

import os
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.core.config import Settings
from service.core.db import Database
from service.core.migrate import upgrade
from service.core.orm import Base
from service.lab.users import create_user
from tests.support.digit_images import MNIST_8K

PG_ADMIN_URL = os.environ.get("LABTRAIN_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("LABTRAIN_TEST_REDIS", "redis://127.0.0.1:6379")
FAST_TIER = os.environ.get("LABTRAIN_TEST_SERVERS", "real") == "none"
# Redis database numbers a test session takes; a claim key in database 0 keeps two sessions
# on one machine (two developers, a developer and CI) from taking each other's messages.
REDIS_NUMBERS = range(15, 0, -1)
REDIS_CLAIM = "labtrain-tests:claimed-db:{}"
REDIS_CLAIM_TTL_S = 2 * 3600
# The code-job deployment, `lab`, for the modules that describe one in LAB (tests/support/labs.py).
# The session's one SLURM cluster, `slurm_cluster`, for the tests that run jobs on it.
pytest_plugins = ["tests.support.slurm_cluster", "tests.support.labs"]


def _needs_servers(what: str) -> None:
    if FAST_TIER:
        pytest.fail(
            f"{what} is not there in the fast tier (LABTRAIN_TEST_SERVERS=none); a test that needs it "
            "must not be marked fast"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_admin():
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # fail loudly: these tests must run against the real server
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} does not answer ({exc}); start it and run again")
    return engine


@pytest.fixture(scope="session")
def make_pg_database():
    """Creates empty PostgreSQL databases for this test session and drops them at the end."""
    _needs_servers("PostgreSQL")
    admin = _pg_admin()
    created = []

    def make() -> str:
        name = f"labtrain_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield make

    def drop(name: str) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    # Each DROP DATABASE waits for a checkpoint (seconds on a busy server); drops that wait
    # together share one, so the session's dozens of databases go in about the time of one.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(drop, created))
    admin.dispose()


def _claim(claims: redis.Redis, key: str, holder: str) -> bool:
    """Takes a claim, or one whose holder was a test session on this machine that is gone (a
    killed run never releases its claims)."""
    if claims.set(key, holder, nx=True, ex=REDIS_CLAIM_TTL_S):
        return True
    current = (claims.get(key) or b"").decode()
    host, _, pid = current.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
        return False
    # Replace only the stale value seen, so two sessions never both win the same number.
    with claims.pipeline() as pipe:
        try:
            pipe.watch(key)
            if (pipe.get(key) or b"").decode() != current:
                return False
            pipe.multi()
            pipe.set(key, holder, ex=REDIS_CLAIM_TTL_S)
            pipe.execute()
            return True
        except redis.WatchError:
            return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RedisNumbers:
    """Redis database numbers (flushed when taken and when given back) that no other test
    session on this machine holds, so test runs do not see each other's messages."""

    def __init__(self):
        self.claims = redis.Redis.from_url(f"{REDIS_BASE}/0")
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self.taken: list[int] = []

    def take(self) -> str:
        for number in REDIS_NUMBERS:
            if number not in self.taken and _claim(self.claims, REDIS_CLAIM.format(number), self.holder):
                self.taken.append(number)
                self._flush(number)
                return f"{REDIS_BASE}/{number}"
        pytest.fail(
            "every Redis database number is claimed by other test sessions; wait, or clear the "
            f"{REDIS_CLAIM.format('*')} keys in database 0"
        )

    def give_back(self, url: str) -> None:
        number = int(url.rsplit("/", 1)[1])
        if number in self.taken:
            self._flush(number)
            self.claims.delete(REDIS_CLAIM.format(number))
            self.taken.remove(number)

    @staticmethod
    def _flush(number: int) -> None:
        client = redis.Redis.from_url(f"{REDIS_BASE}/{number}")
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def redis_numbers():
    _needs_servers("Redis")
    numbers = RedisNumbers()
    try:
        numbers.claims.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {REDIS_BASE} does not answer ({exc}); start it and run again")
    yield numbers
    for number in list(numbers.taken):
        numbers.give_back(f"{REDIS_BASE}/{number}")


@pytest.fixture(scope="module")
def make_redis_url(redis_numbers):
    """Redis URLs for one test module's deployments, given back when the module ends (a whole
    suite would otherwise need more database numbers than Redis has)."""
    urls: list[str] = []

    def make() -> str:
        urls.append(redis_numbers.take())
        return urls[-1]

    yield make
    for url in urls:
        redis_numbers.give_back(url)


@pytest.fixture(scope="session")
def pg_url(make_pg_database) -> str:
    url = make_pg_database()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url(redis_numbers) -> str:
    return redis_numbers.take()


@pytest.fixture(scope="session")
def database_url(request, tmp_path_factory) -> str:
    """The session's database: PostgreSQL, or a SQLite file in the fast tier."""
    if FAST_TIER:
        url = f"sqlite:///{tmp_path_factory.mktemp('database') / 'labtrain.db'}"
        upgrade(url)
        return url
    return request.getfixturevalue("pg_url")


@pytest.fixture
def broker_url(request, tmp_path) -> str:
    """Redis, or the serverless broker (a SQLite file) in the fast tier."""
    if FAST_TIER:
        return f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def settings(tmp_path, database_url, broker_url) -> Settings:
    """Settings for one test; its data directory holds the MNIST subset as `mnist.npz`."""
    data_dir = tmp_path / "datasets"
    data_dir.mkdir()
    (data_dir / "mnist.npz").symlink_to(MNIST_8K)
    return Settings(
        home=tmp_path,
        database_url=database_url,
        broker_url=broker_url,
        data_dir=data_dir,
        artifact_dir=tmp_path / "artifacts",
        max_upload_bytes=2_000_000,
        max_resumable_upload_bytes=3_000_000,
        submit_rate_limit=None,
        predict_rate_limit=None,
    )  # tests/service/api/test_monitoring.py sets them


@pytest.fixture
def db(settings):
    """The session database, emptied before each test."""
    database = Database(settings.database_url)
    tables = [t.name for t in Base.metadata.sorted_tables if t.name != "dispatch_lock"]
    with database.engine.begin() as conn:
        if database.url.startswith("sqlite"):
            for name in reversed(tables):  # children before parents
                conn.execute(text(f"DELETE FROM {name}"))
        else:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    yield database
    database.dispose()


@pytest.fixture
def app(settings, db):
    from service.api import create_app

    application = create_app(settings)
    yield application
    application.extensions["labtrain"].models.close()  # the models' processes it started
    application.extensions["labtrain"].db.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_user(db):
    """Creates a user and returns its Authorization header."""

    def make(name: str, admin: bool = False) -> dict[str, str]:
        with db.session() as session:
            _user, token = create_user(session, name, admin=admin)
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def run_queued(settings, db):
    """Runs a queued job in this process, as a worker's pool process would (no Celery)."""
    from workers.runner import JobRunner

    runner = JobRunner(settings, db, "test-worker")
    return runner.run


def pytest_ignore_collect(collection_path, config):
    """In the fast tier, modules with no fast test are not even imported (some load TensorFlow)."""
    if FAST_TIER and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return "pytest.mark.fast" not in collection_path.read_text()
    return None
