"""A worker's reports reach the job's rows in few transactions: log lines and progress wait a
moment and go together (one sequence-number update, one wake-up), before the next other event,
and on time even when the job reports nothing more."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import event, select

from service.core.orm import Job, JobEvent
from service.jobs import lifecycle
from service.lab.users import create_user
from workers import reporter as reporter_module
from workers.reporter import DbReporter
from workers.runner import allotment
from workers.trainers import base
from workers.trainers.base import Allotment

pytestmark = pytest.mark.fast


class NoWatch:
    def __init__(self):
        self.stop = type("Stop", (), {"is_set": staticmethod(lambda: False)})()
        self.preempting = False  # the watch sets it when the dispatcher asks the job to yield


@pytest.fixture
def job_id(db):
    with db.session() as session:
        owner, _token = create_user(session, "alice")
        return lifecycle.create_job(session, owner, family="classic", spec={}, queue="cpu", name=None).id


@pytest.fixture
def commits(db):
    counted = []
    listener = lambda conn: counted.append(1)  # noqa: E731
    event.listen(db.engine, "commit", listener)
    yield counted
    event.remove(db.engine, "commit", listener)


def events_of(db, job_id):
    with db.session() as session:
        return [
            (e.seq, e.type, e.data)
            for e in session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq))
        ]


def make_reporter(db, job_id):
    return DbReporter(db, job_id, logging.getLogger("test-job"), NoWatch())


def test_log_lines_wait_and_go_together_before_the_next_other_event(db, job_id, commits, monkeypatch):
    monkeypatch.setattr(reporter_module, "WRITE_EVERY_S", 60.0)
    report = make_reporter(db, job_id)
    report.event("log", {"message": "first"})  # the first line waits too (a short job's go with its outcome)
    for fold in range(1, 6):
        report.event("log", {"message": f"fold {fold}"})
        report.progress(fraction=fold / 6)
    assert commits == []  # five lines and five progress reports, all still waiting
    report.event("epoch", {"epoch": 1, "loss": 0.5})
    assert len(commits) == 1  # then the lines, the progress and the epoch in one transaction
    assert [(seq, kind, data.get("message", data.get("epoch"))) for seq, kind, data in events_of(db, job_id)] == [
        (1, "status", None),
        (2, "log", "first"),
        *[(2 + fold, "log", f"fold {fold}") for fold in range(1, 6)],
        (8, "epoch", 1),
    ]
    with db.session() as session:
        job = session.get(Job, job_id)
        assert job.progress["fraction"] == pytest.approx(5 / 6) and job.event_seq == 8


def test_what_waits_is_written_on_time_while_the_job_is_quiet(db, job_id, tmp_path, monkeypatch):
    monkeypatch.setattr(reporter_module, "WRITE_EVERY_S", 0.05)
    report = make_reporter(db, job_id)
    report.event("log", {"message": "cell 1/3: import torch"})
    report.event("log", {"message": "cell 2/3: train()"})
    assert [kind for _, kind, _ in events_of(db, job_id)] == ["status"]  # both wait, the first too
    time.sleep(0.06)
    allotment(report, tmp_path, 0.0, None).stop_requested()  # asked after each batch, or by a code job's supervisor
    assert [data.get("message") for _, kind, data in events_of(db, job_id) if kind == "log"] == [
        "cell 1/3: import torch",
        "cell 2/3: train()",
    ]


def test_the_outcome_carries_what_still_waits(db, job_id, monkeypatch):
    monkeypatch.setattr(reporter_module, "WRITE_EVERY_S", 60.0)
    with db.session() as session:
        attempt = lifecycle.claim(session, job_id, "worker-1")
    report = make_reporter(db, job_id)
    report.event("log", {"message": "1 rows"})
    report.event("log", {"message": "fold 1/5"})
    report.progress(fraction=1.0)
    with db.session() as session:
        report.write_pending(session)
        assert lifecycle.finish(session, job_id, lifecycle.SUCCEEDED, attempt=attempt)
    kinds = [(kind, data.get("message") or data.get("status")) for _, kind, data in events_of(db, job_id)]
    assert kinds[-2:] == [("log", "fold 1/5"), ("status", "succeeded")]
    with db.session() as session:
        assert session.get(Job, job_id).progress == {"fraction": 1.0}


def test_checkpoints_are_due_at_the_last_epoch_and_at_most_every_interval(tmp_path, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    allotted = Allotment(checkpoint_dir=tmp_path, checkpoint_every_s=30.0)
    due = []
    for seconds, last in [(10, False), (10, False), (15, False), (10, False), (1, True)]:
        clock[0] += seconds
        due.append(allotted.checkpoint_due(last=last))
    assert due == [False, False, True, False, True]  # 35 s after the start, then the last epoch
    assert Allotment().checkpoint_due(last=True) is False  # a job that keeps no checkpoints


def test_a_job_asked_to_yield_checkpoints_at_the_next_epoch_end_and_then_stops(db, job_id, tmp_path):
    watch = NoWatch()
    allotted = allotment(DbReporter(db, job_id, logging.getLogger("test-job"), watch), tmp_path, 3600.0, None)
    assert allotted.checkpoint_due(last=False) is False and allotted.stop_requested() is False
    watch.preempting = True
    assert allotted.preempt_requested() and allotted.stop_requested() is False  # not before its checkpoint
    assert allotted.checkpoint_due(last=False) is True  # this epoch's end, however recent the last one
    assert allotted.stop_requested() is True and allotted.yielded


def test_metrics_events_wait_like_log_lines_and_a_resumed_attempt_repeats_no_point(db, job_id, commits, monkeypatch):
    monkeypatch.setattr(reporter_module, "WRITE_EVERY_S", 60.0)
    first = make_reporter(db, job_id)
    first.event("metrics", {"step": 0, "source": "tensorboard", "loss": 1.0})
    first.event("metrics", {"step": 1, "source": "tensorboard", "loss": 0.5})
    before = len(commits)
    first.flush()
    assert len(commits) - before == 1  # both steps in one transaction
    resumed = make_reporter(db, job_id)  # the next attempt writes steps 1 and 2 again
    resumed.event("metrics", {"step": 1, "source": "tensorboard", "loss": 0.7, "accuracy": 0.9})
    resumed.event("metrics", {"step": 0, "source": "tensorboard", "loss": 0.8})
    resumed.event("metrics", {"step": 2, "source": "tensorboard", "loss": 0.25})
    resumed.flush()
    assert [data for _, kind, data in events_of(db, job_id) if kind == "metrics"] == [
        {"step": 0, "source": "tensorboard", "loss": 1.0},
        {"step": 1, "source": "tensorboard", "loss": 0.5},
        {"step": 1, "source": "tensorboard", "accuracy": 0.9},  # the first attempt's loss at step 1 stays
        {"step": 2, "source": "tensorboard", "loss": 0.25},
    ]
