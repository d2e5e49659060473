"""What a worker's refill and a job's position cost as its queue grows, against reading the whole
line (what both did before 2026-12-06, late night), in the same run and on the same database.

With `--queued` jobs of one student waiting in the cpu queue (and, in a second line, the same
number spread over ten students), in process, rolled back after each call so the queue stays as
it is:
  refill    Dispatcher.refill: the heads of each owner's line and the jobs holding a slot;
            against the lock, the online workers and every queued and running job read and
            filled by the round's rule (the refill before);
  position  fair_share.place_without_the_line, one count (one student waits; with ten, it says
            None and the line is read); against fair_share.queue_order, the whole line read and
            ordered.
CPU milliseconds a call (this process's; the database server's are not in it), on SQLite and
on PostgreSQL.

    .venv/bin/python bench/queue_scaling.py [--queued 100 1000] [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import round_cost
from service.core.config import Settings
from service.core.db import Database
from service.core.migrate import upgrade
from service.core.orm import Job, User, utcnow
from service.dispatcher import Dispatcher, _first_waiting, _slot_jobs
from service.jobs import lifecycle
from service.lab import fair_share, worker_registry
from service.lab.users import create_user
from tests.support.workers import heartbeat

PG_ADMIN = os.environ.get("LABTRAIN_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SPEC = {"dataset": "iris", "algorithm": "knn"}


def cpu_ms(db: Database, call: Callable, calls: int) -> float:
    """CPU milliseconds of `call(session)`, each in a transaction rolled back (round_cost's timing)."""
    return round_cost.cpu_ms(db, lambda session: (call(session), session.rollback()), calls)


def whole_line_refill(dispatcher: Dispatcher, session) -> str | None:
    """The refill as it was: the look whether any job waits, then every queued and running job of the
    queue read and the round's fill."""
    if session.execute(_first_waiting(), {"queues": ["cpu"]}).first() is None:
        return None
    dispatcher._lock(session)
    serving = [w for w in worker_registry.online(session) if w.serves("cpu")]
    kept = dispatcher._fill(session, "cpu", utcnow(), _slot_jobs(session, "cpu"), serving, None, keep_for="w1")
    return kept[0] if kept else None


def measure(url: str, queued: int, owners: int, calls: int) -> list[tuple[str, float, float]]:
    db = Database(url)
    settings = Settings.from_env_map(
        {"LABTRAIN_HOME": tempfile.mkdtemp(), "LABTRAIN_DATABASE_URL": url, "LABTRAIN_MAX_QUEUED": "100000"}
    )
    with db.session() as session:
        session.query(Job).delete()
        students = []
        for index in range(owners):
            name = f"student{index}"
            students.append(session.query(User).filter_by(name=name).first() or create_user(session, name)[0])
        for index in range(queued):
            owner = students[index % owners]
            lifecycle.create_job(session, owner, family="classic", spec=SPEC, queue="cpu", name=None)
    heartbeat(db, "w1", "cpu", 2)
    dispatcher = Dispatcher(settings, None, name="w1", slurm=False)
    taken = []
    for refill in (
        lambda session: dispatcher.refill(session, "w1", ["cpu"]),
        lambda session: whole_line_refill(dispatcher, session),
    ):
        with db.session() as session:
            taken.append(refill(session))
            session.rollback()
    assert taken[0] == taken[1] is not None, taken  # the same job, by either
    with db.session() as session:
        last = session.query(Job).order_by(Job.id.desc()).first()

    def place(session) -> None:
        fair_share.place_without_the_line(session, session.get(Job, last.id)) or fair_share.queue_order(
            session, "cpu", settings
        )

    rows = [
        (
            "refill",
            cpu_ms(db, lambda session: dispatcher.refill(session, "w1", ["cpu"]), calls),
            cpu_ms(db, lambda session: whole_line_refill(dispatcher, session), calls),
        ),
        (
            "position",
            cpu_ms(db, place, calls),
            cpu_ms(
                db, lambda session: (session.get(Job, last.id), fair_share.queue_order(session, "cpu", settings)), calls
            ),
        ),
    ]
    db.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queued", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    database = f"labtrain_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    urls = {"PostgreSQL": PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"}
    with tempfile.TemporaryDirectory() as folder:
        urls["SQLite"] = f"sqlite:///{folder}/labtrain.db"
        print("| database | queued | students | call | now, ms | whole line, ms | whole line / now |")
        print("|---|---|---|---|---|---|---|")
        try:
            for backend, url in urls.items():
                upgrade(url)
                for queued in args.queued:
                    for owners in (1, 10):
                        for call, now, before in measure(url, queued, owners, args.calls):
                            print(
                                f"| {backend} | {queued} | {owners} | {call} | {now:.2f} | {before:.2f} | "
                                f"{before / now:.1f} |",
                                flush=True,
                            )
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
