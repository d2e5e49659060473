"""The serverless broker's consumer waits on a doorbell (service/core/sqlite_broker.py): a publish
in another process wakes it, and so does an ack that frees its prefetch slot. Its safety round
is set to a minute here; each test checks that the consumer's wait ended with a ring."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from queue import Empty

import pytest
from kombu import Queue
from sqlalchemy import text

from service.core import sqlite_broker
from service.core.broker import RUN_JOB_TASK, make_celery, send_job
from service.core.config import Settings

SAFETY_S = 60.0
WAIT_S = 30.0  # under SAFETY_S: the consumer's wait ends with a ring or at this timeout

PUBLISHER = textwrap.dedent(
    """
    import sys
    from service.core.broker import make_celery, send_job
    from service.core.config import Settings
    send_job(make_celery(Settings.from_env_map({"LABTRAIN_HOME": sys.argv[1]})), "job-2", "cpu")
    """
)


@pytest.fixture
def embedded(tmp_path):
    settings = Settings.from_env_map({"LABTRAIN_HOME": str(tmp_path), "LABTRAIN_EMBEDDED_SAFETY_S": str(SAFETY_S)})
    app = make_celery(settings)
    yield settings, app
    sqlite_broker.configure(Settings.embedded_safety_s, Settings.embedded_poll_interval)


class Looks:
    """Counts the consumer's looks at its queues, says when one found nothing, and records how
    each of its waits on the doorbell ended (True: rung)."""

    def __init__(self, transport):
        self.count, self.empty, self.waits = 0, threading.Event(), []
        self._get, self._wait = transport.cycle.get, transport.bell.wait
        transport.cycle.get, transport.bell.wait = self.get, self.wait

    def wait(self, timeout):
        rung = self._wait(timeout)
        self.waits.append(rung)
        return rung

    def get(self, *args, **kwargs):
        self.count += 1
        try:
            return self._get(*args, **kwargs)
        except Empty:
            self.empty.set()
            raise


def drain_in_thread(connection) -> tuple[threading.Thread, list[Exception]]:
    errors: list[Exception] = []

    def drain():
        try:
            connection.drain_events(timeout=WAIT_S)
        except Exception as error:  # reported by the test
            errors.append(error)

    thread = threading.Thread(target=drain)
    thread.start()
    return thread, errors


def test_the_embedded_broker_url_selects_the_doorbell_transport(embedded, tmp_path):
    settings, app = embedded
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.db'}"  # what the user sees
    assert app.conf.broker_url == f"sqla-doorbell+sqlite:///{tmp_path / 'broker.db'}"
    with app.connection_for_read() as connection:
        assert isinstance(connection.transport, sqlite_broker.Transport)
        assert connection.transport.polling_interval == SAFETY_S
    for other in ("redis://127.0.0.1:6379/0", "sqla+postgresql://u@h/db", "sqla+sqlite://"):
        assert sqlite_broker.broker_url(other) == other


def test_a_publish_in_another_process_wakes_the_waiting_consumer(embedded, tmp_path):
    _settings, app = embedded
    got = []
    with app.connection_for_read() as connection:
        consumer = connection.Consumer(Queue("cpu"), callbacks=[lambda body, message: got.append(body)])
        consumer.consume()
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=0.01)  # it binds its doorbell, looks, finds nothing
        looks = Looks(connection.transport)
        thread, errors = drain_in_thread(connection)  # the next look is SAFETY_S away
        subprocess.run([sys.executable, "-c", PUBLISHER, str(tmp_path)], check=True, timeout=120)
        thread.join(WAIT_S + 10)
        assert not errors, errors
        assert [body[0] for body in got] == [["job-2"]]
        assert looks.waits == [True] and looks.count == 1


def test_an_ack_that_frees_the_prefetch_slot_wakes_the_consumer(embedded):
    _settings, app = embedded
    for job_id in ("job-1", "job-2"):
        send_job(app, job_id, "cpu")
    got = []
    with app.connection_for_read() as connection:
        consumer = connection.Consumer(Queue("cpu"), callbacks=[lambda body, message: got.append(message)])
        consumer.qos(prefetch_count=1)  # as a worker with every slot busy
        consumer.consume()
        connection.drain_events(timeout=WAIT_S)
        assert [message.headers["task"] for message in got] == [RUN_JOB_TASK]
        looks = Looks(connection.transport)
        thread, errors = drain_in_thread(connection)
        assert looks.empty.wait(WAIT_S)  # the slot is taken: nothing may be delivered yet
        got[0].ack()  # the job ended (in the worker, from the pool's result thread)
        thread.join(WAIT_S + 10)
        assert not errors, errors
        assert [message.payload[0] for message in got] == [["job-1"], ["job-2"]]
        assert looks.waits == [True] and looks.count == 2
        got[1].ack()


def take_all(app, queue: str, taken: list[str]) -> None:
    """Take messages from `queue` on a connection of this thread's own until none is left."""
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(message.payload[0][0])


def test_each_message_is_taken_once_and_leaves_the_broker_file(embedded):
    _settings, app = embedded
    sent = [f"job-{n}" for n in range(60)]
    for job_id in sent:
        send_job(app, job_id, "cpu")
    takers = [[] for _ in range(3)]
    threads = [threading.Thread(target=take_all, args=(app, "cpu", mine)) for mine in takers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    taken = [job_id for mine in takers for job_id in mine]
    assert sorted(taken) == sorted(sent)  # none lost, none taken twice
    assert all(mine == sorted(mine, key=sent.index) for mine in takers)  # each taker in the order sent
    assert rows_in(app) == 0  # a taken message is deleted: the file does not grow with every job


def test_declaring_a_queue_forgets_messages_kept_taken(embedded):
    """kombu's own transport kept every message it delivered, marked taken: they go as a worker starts."""
    _settings, app = embedded
    send_job(app, "job-1", "cpu")
    send_job(app, "job-2", "cpu")
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.session.execute(
            text("UPDATE kombu_message SET visible = 0 WHERE id = (SELECT min(id) FROM kombu_message)")
        )
        channel.session.commit()
        assert rows_in(app) == 2
        Queue("cpu")(channel).declare()
        assert rows_in(app) == 1
        assert channel.basic_get("cpu", no_ack=True).payload[0] == ["job-2"]


def rows_in(app) -> int:
    with app.connection_for_read() as connection:
        return connection.default_channel.session.execute(text("SELECT count(*) FROM kombu_message")).scalar()


def test_the_broker_file_keeps_a_write_ahead_log(embedded, tmp_path):
    """Synced at checkpoints, not at each put and take (kombu's default journal waited for the disk twice a job)."""
    _settings, app = embedded
    send_job(app, "job-1", "cpu")
    with sqlite3.connect(tmp_path / "broker.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
