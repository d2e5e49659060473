"""The doorbell between the embedded deployment's processes (service/core/doorbell.py), and the
SQLite wake-ups that use it (service/core/wakeups.py): real sockets, real processes."""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from service import dispatcher
from service.core import doorbell, wakeups
from service.core.db import Database

WAITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from service.core import doorbell
    bell = doorbell.Doorbell(Path(sys.argv[1]), fallback_s=0.02)
    print(bell.path, flush=True)
    sys.stdin.readline()  # rung after this line
    print("rung" if bell.wait(float(sys.argv[2])) else "timed out", flush=True)
    bell.close()
    """
)


def start_waiter(folder, timeout: float = 60) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WAITER, str(folder), str(timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_ring_crosses_processes_and_the_socket_goes_with_its_waiter(tmp_path):
    folder = tmp_path / "bells"
    waiters = [start_waiter(folder) for _ in range(2)]
    paths = [waiter.stdout.readline().strip() for waiter in waiters]
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(path) for path in paths)
    for waiter in waiters:
        waiter.stdin.write("go\n")
        waiter.stdin.flush()
    doorbell.ring(folder)
    assert [waiter.communicate(timeout=60)[0].strip() for waiter in waiters] == ["rung", "rung"]
    assert os.listdir(folder) == []  # each removed its own socket
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_waiter_times_out_without_a_ring(tmp_path):
    waiter = start_waiter(tmp_path / "bells", timeout=0.2)
    waiter.stdout.readline()
    waiter.stdin.write("go\n")
    waiter.stdin.flush()
    assert waiter.communicate(timeout=60)[0].strip() == "timed out"


def test_the_socket_of_a_killed_process_is_removed_by_the_next_ring(tmp_path):
    folder = tmp_path / "bells"
    dead, alive = start_waiter(folder), start_waiter(folder)
    dead_path, alive_path = dead.stdout.readline().strip(), alive.stdout.readline().strip()
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=60)
    assert os.path.exists(dead_path)  # no one took it away
    doorbell.ring(folder)
    assert os.listdir(folder) == [os.path.basename(alive_path)]
    alive.stdin.write("go\n")
    alive.stdin.flush()
    assert alive.communicate(timeout=60)[0].strip() == "rung"  # the live one was rung all the same


def test_ringing_a_full_doorbell_never_blocks_and_one_wait_takes_every_ring(tmp_path):
    bell = doorbell.Doorbell(tmp_path / "bells", fallback_s=0.02)
    try:
        for _ in range(5000):  # far past a datagram socket's buffer
            doorbell.ring(bell.folder)
        assert bell.wait(0) is True
        assert bell.wait(0) is False  # drained: the rings before the wait are one wake-up
    finally:
        bell.close()


def test_a_path_too_long_for_a_socket_rings_in_a_short_private_folder(tmp_path):
    deep = tmp_path / ("d" * 90) / "labtrain.db"
    folder = doorbell.folder_for(deep)
    assert folder == doorbell.folder_for(str(deep))  # every process finds the same one
    assert not str(folder).startswith(str(tmp_path))
    bell = doorbell.Doorbell(folder, fallback_s=0.02)
    try:
        assert bell.ready and len(os.fsencode(bell.path)) <= doorbell.MAX_SOCKET_PATH
        assert stat.S_IMODE(folder.stat().st_mode) == stat.S_IMODE(folder.parent.stat().st_mode) == 0o700
        doorbell.ring(folder)
        assert bell.wait(5) is True
    finally:
        bell.close()
        folder.rmdir()
    home = os.path.realpath("/srv/labtrain")  # a usual place: short enough
    assert doorbell.folder_for(f"{home}/labtrain.db") == Path(home) / "labtrain.db-doorbells"


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user owns needs root")
def test_a_folder_of_another_user_is_not_used_and_the_waiter_polls(tmp_path):
    folder = tmp_path / "bells"
    folder.mkdir(mode=0o777)
    os.chown(folder, 65534, 65534)
    bell = doorbell.Doorbell(folder, fallback_s=0.01)
    assert not bell.ready and os.listdir(folder) == []
    assert bell.wait(5) is True  # a poll: the caller looks
    bell.close()


NOTIFIER = textwrap.dedent(
    """
    import sys
    from sqlalchemy import text
    from service.core import wakeups
    from service.core.db import Database
    db = Database(sys.argv[1])
    with db.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        wakeups.notify(session, wakeups.JOB_EVENTS, {"type": "status"})
    db.dispose()
    """
)


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'labtrain.db'}"
    db = Database(url)
    with db.session() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    db.dispose()
    return url


@pytest.fixture
def db_and_commits(sqlite_url):
    """The database, and a reader of its commits (wakeups.SqliteChanges) bound to its doorbell."""
    db = Database(sqlite_url)
    commits = wakeups.SqliteChanges(sqlite_url, fallback_s=0.02)
    yield db, commits
    commits.close()
    db.dispose()


def test_a_commit_in_another_process_wakes_a_sqlite_reader(sqlite_url):
    commits = wakeups.SqliteChanges(sqlite_url, fallback_s=0.02)
    try:
        assert commits.bell.ready
        assert commits.wait(0.1) is False  # nothing committed, no ring
        subprocess.run([sys.executable, "-c", NOTIFIER, sqlite_url], check=True, timeout=120)
        assert commits.bell.wait(60) is True  # rung, after the commit
        assert commits.changed() is True  # and the commit is there to be found
    finally:
        commits.close()


def test_notify_rings_when_the_transaction_commits_and_not_when_it_rolls_back(db_and_commits):
    db, commits = db_and_commits
    with db.sessions() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        wakeups.notify(session, wakeups.WORKERS, {"worker": "w"})
        assert commits.bell.wait(0) is False  # not before the commit
        session.rollback()
        session.execute(text("SELECT 1"))
        session.commit()  # a later commit without a notify of its own
    assert commits.bell.wait(0.1) is False
    with db.session() as session:
        wakeups.notify(session, wakeups.WORKERS, {"worker": "w"})
    assert commits.bell.wait(0) is True


def test_a_ring_carries_what_changed_and_a_full_queue_says_one_may_be_lost(tmp_path):
    folder = tmp_path / "bells"
    bell = doorbell.Doorbell(folder, fallback_s=0.02)
    try:
        doorbell.ring(folder, b'[["c", {"n": 1}]]')
        assert bell.take(60) == [b'[["c", {"n": 1}]]']
        doorbell.ring(folder, b"x" * (doorbell.MAX_RING + 1))  # too long to carry: rings as ANY
        assert bell.take(60) == [doorbell.ANY]
        for n in range(100):  # more than a socket's queue holds: the rest are refused, unblocking
            doorbell.ring(folder, str(n).encode())
        rings = bell.take(60)
        assert rings[0] == b"0" and rings[-1] == doorbell.ANY and b"99" not in rings
        assert bell.take(0) == []
    finally:
        bell.close()


def test_a_sqlite_reader_hears_what_a_commit_announced(db_and_commits):
    db, commits = db_and_commits
    assert commits.wakes(0.05) == []  # nothing committed, no ring
    with db.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        wakeups.notify(session, wakeups.JOB_EVENTS, {"type": "status", "status": "running"})
        wakeups.notify(session, wakeups.WORKERS, {"worker": "w"})
    assert commits.wakes(60) == [
        wakeups.Wake(wakeups.JOB_EVENTS, {"type": "status", "status": "running"}),
        wakeups.Wake(wakeups.WORKERS, {"worker": "w"}),
    ]
    with db.session() as session:  # a commit that announces nothing: found when the wait ends
        session.execute(text("INSERT INTO t VALUES (2)"))
    assert commits.wakes(0.05) is None
    with db.session() as session:  # a ring that names nothing (or one lost to a full queue)
        session.execute(text("INSERT INTO t VALUES (3)"))
    doorbell.ring(commits.bell.folder)
    assert commits.wakes(60) is None


def test_the_embedded_dispatcher_sleeps_through_a_start_and_wakes_for_an_end(db_and_commits):
    """On SQLite the dispatcher reads the doorbell's payloads as PostgreSQL's: a job's start frees
    no slot and steps no search, so it is slept through; its end wakes it."""
    db, commits = db_and_commits
    settings = SimpleNamespace(dispatch_safety_s=600)
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        woke = pool.submit(dispatcher._wait_for_a_change, None, commits, settings, stop, starts_count=False)
        try:
            for status in ("running", "succeeded"):
                with db.session() as session:
                    session.execute(text("INSERT INTO t VALUES (1)"))
                    wakeups.notify(session, wakeups.JOB_EVENTS, {"type": "status", "status": status})
                waiting = select.poll()
                waiting.register(commits.bell.fileno(), select.POLLIN)
                while status == "running" and waiting.poll(0):  # the waiter takes the start's ring first
                    stop.wait(0.01)
            assert [wake.payload["status"] for wake in woke.result(timeout=60)] == ["succeeded"]
        finally:
            stop.set()  # before the pool waits for its thread


def test_the_dispatcher_sleeps_through_the_queued_of_trials_it_submitted_and_looked_at(db_and_commits):
    """A search's trials that the dispatcher submitted itself were seen queued by the round that
    followed: their own `queued` wake-ups are old news. Another job's `queued` is not, nor a
    second `queued` of the same trial (sent back)."""
    db, commits = db_and_commits
    settings = SimpleNamespace(dispatch_safety_s=600)
    stop = threading.Event()

    def announce(*queued: str) -> None:
        with db.session() as session:
            session.execute(text("INSERT INTO t VALUES (1)"))
            for job in queued:
                wakeups.notify(session, wakeups.JOB_EVENTS, {"job": job, "type": "status", "status": "queued"})
        waiting = select.poll()
        waiting.register(commits.bell.fileno(), select.POLLIN)
        while waiting.poll(0):  # the waiter takes the ring before the next commit
            stop.wait(0.01)

    with ThreadPoolExecutor(1) as pool:
        woke = pool.submit(
            dispatcher._wait_for_a_change, None, commits, settings, stop, starts_count=False, looked_at={"t1", "t2"}
        )
        try:
            announce("t1", "t2")
            announce("t1")
            assert [wake.payload["job"] for wake in woke.result(timeout=60)] == ["t1"]
            woke = pool.submit(
                dispatcher._wait_for_a_change, None, commits, settings, stop, starts_count=False, looked_at={"t1"}
            )
            announce("t1", "other")
            assert [wake.payload["job"] for wake in woke.result(timeout=60)] == ["t1", "other"]
        finally:
            stop.set()  # before the pool waits for its thread
