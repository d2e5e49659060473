"""The API's stream hub on SQLite waits on the database's doorbell (service/api/stream_hub.py):
an event written by another process wakes the streams watching its job, read from the ring
itself where it names the job, from the database where it does not. The hub's own round is set
to a minute here, so a stream woken within the test's wait was rung."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import textwrap

import pytest

from service.api.stream_hub import StreamHub, job_key, user_key
from service.core.db import Database
from service.core.migrate import upgrade
from service.jobs import lifecycle
from service.lab.users import create_user
from tests.support.sql import statements

HUB_ROUND_S = 60.0
WAIT_S = 30.0

WRITER = textwrap.dedent(
    """
    import sys
    from service.core.db import Database
    from service.jobs import lifecycle
    db = Database(sys.argv[1])
    if sys.argv[3] == "names the job":
        with db.session() as session:
            lifecycle.add_event(session, sys.argv[2], "log", {"line": "from another process"})
    else:  # a commit, then a ring that says only that something was committed
        from sqlalchemy import func, insert, select
        from service.core import doorbell
        from service.core.orm import JobEvent, utcnow
        with db.session() as session:
            seq = session.scalar(select(func.max(JobEvent.seq)).where(JobEvent.job_id == sys.argv[2])) + 1
            row = {"job_id": sys.argv[2], "seq": seq, "type": "log", "data": {"line": "x"}, "time": utcnow()}
            session.execute(insert(JobEvent.__table__), [row])
        doorbell.ring(doorbell.sqlite_folder(db.engine.url.database))
    db.dispose()
    """
)


def a_job(tmp_path) -> tuple[str, Database, str, str]:
    """A SQLite database with one queued job: its URL, the database, the job's id and its owner's."""
    url = f"sqlite:///{tmp_path / 'labtrain.db'}"
    upgrade(url)
    db = Database(url)
    with db.session() as session:
        user, _token = create_user(session, "alice")
        job = lifecycle.create_job(session, user, family="classic", spec={}, queue="cpu", name=None)
        return url, db, job.id, user.id


@pytest.mark.parametrize("ring", ["names the job", "names nothing"])
def test_an_event_from_another_process_wakes_its_streams_through_the_doorbell(tmp_path, ring):
    url, db, job_id, owner_id = a_job(tmp_path)

    async def scenario() -> tuple[bool, bool, bool, str, list[str]]:
        hub = StreamHub(db, url, HUB_ROUND_S)
        await hub.start()
        try:
            while hub.state != "polling":  # bound to its doorbell, the newest event read
                await asyncio.sleep(0.01)
            with (
                statements(db) as seen,
                hub.watching(job_key(job_id)) as mine,
                hub.watching(user_key(owner_id)) as owners,
                hub.watching(user_key("someone-else")) as other,
            ):
                writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, url, job_id, ring)
                assert await writer.wait() == 0
                try:
                    await asyncio.wait_for(mine.wait(), WAIT_S)
                except TimeoutError:
                    pass
                return mine.is_set(), owners.is_set(), other.is_set(), hub.state, list(seen)
        finally:
            await hub.stop()

    try:
        woken, owner_woken, other_woken, state, read = asyncio.run(scenario())
    finally:
        db.dispose()
    assert state == "polling" and woken and owner_woken and not other_woken
    if ring == "names the job":
        assert read == []  # the ring said which job changed: the hub read nothing
    else:
        assert any("FROM job_events" in statement for statement in read), read


def test_a_hub_with_no_stream_reads_nothing_until_one_opens_which_then_looks(tmp_path):
    """With no stream open for a round, the hub stops reading its doorbell: commits from another
    process (a burst of submits) cost it nothing. A stream that opens then is woken once, so an
    event it may have missed while the hub slept is read, and later rings wake it as before."""
    url, db, job_id, _owner_id = a_job(tmp_path)
    round_s = 0.2

    async def write_an_event() -> None:
        writer = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, url, job_id, "names the job")
        assert await writer.wait() == 0

    async def scenario() -> tuple[list[str], bool, bool]:
        hub = StreamHub(db, url, round_s)
        await hub.start()
        try:
            while hub.state != "polling":
                await asyncio.sleep(0.01)
            await asyncio.sleep(round_s * 3)  # no stream for longer than a round: the hub sleeps
            with statements(db) as read_while_idle:
                for _ in range(3):
                    await write_an_event()
                await asyncio.sleep(round_s * 3)
            with hub.watching(job_key(job_id)) as opened:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(opened.wait(), WAIT_S)  # woken once: it may have missed one
                woken_on_opening = opened.is_set()
                opened.clear()
                await write_an_event()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(opened.wait(), WAIT_S)
                woken_by_a_ring = opened.is_set()
            return list(read_while_idle), woken_on_opening, woken_by_a_ring
        finally:
            await hub.stop()

    try:
        read_while_idle, woken_on_opening, woken_by_a_ring = asyncio.run(scenario())
    finally:
        db.dispose()
    assert read_while_idle == []
    assert woken_on_opening and woken_by_a_ring
