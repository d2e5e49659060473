"""What a dispatcher round costs as the queue grows: the CPU time of one round (and of the look
that decides whether to run one) with 0, 100, 300 and 1000 jobs waiting, against a round with
none waiting, measured in the same run.

In process, on a fresh SQLite database or, with `--database`, an empty PostgreSQL one: one
owner's iris jobs wait on the cpu queue, a worker of 2 slots is online and busy, so each round
reads and orders every waiting job and sends none (the round of a burst, between two ends).
Then, with 100 waiting, rounds after an end each: one slot free, one job released (a write and a
send to the broker, the embedded one or `--broker`, where the messages stay: name a Redis
database of its own), against the round that sends none; the end before it and the claim after
it are not timed.

    .venv/bin/python bench/round_cost.py [--rounds 50] [--database postgresql+psycopg://...] [--broker redis://...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.core.broker import make_celery
from service.core.config import Settings
from service.core.db import Database
from service.core.migrate import upgrade
from service.core.orm import Job
from service.dispatcher import Dispatcher
from service.jobs import lifecycle
from service.lab.users import create_user
from tests.support.workers import heartbeat

SPEC = {"dataset": "iris", "algorithm": "knn"}
WAITING = (0, 100, 300, 1000)
RELEASING_WITH = 100  # jobs waiting while the releasing rounds are timed
WARM_UP = 5


def cpu_ms(db: Database, work, rounds: int) -> float:
    for _ in range(WARM_UP):  # statement caches, the first round's imports
        with db.session() as session:
            work(session)
    start = time.process_time()
    for _ in range(rounds):
        with db.session() as session:
            work(session)
    return (time.process_time() - start) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--database", help="an empty database's URL (default: a new SQLite file)")
    parser.add_argument("--broker", help="a broker's URL (default: the embedded one, in the same folder)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labtrain-round-"))
    url = args.database or f"sqlite:///{home}/labtrain.db"
    environment = {"LABTRAIN_HOME": str(home), "LABTRAIN_DATABASE_URL": url}
    settings = Settings.from_env_map(environment | ({"LABTRAIN_BROKER_URL": args.broker} if args.broker else {}))
    settings.ensure_dirs()
    upgrade(url)
    db = Database(url)
    with db.session() as session:
        owner = create_user(session, "bench")[0]
    dispatcher = Dispatcher(settings, make_celery(settings), name="bench")
    heartbeat(db, "w1", "cpu", 2)
    with db.session() as session:  # two running jobs fill the worker's slots
        for _ in range(2):
            job = lifecycle.create_job(session, owner, family="classic", spec=SPEC, queue="cpu", name=None)
            assert lifecycle.claim(session, job.id, "w1")
    rows, waiting = [], 0
    for target in WAITING:
        with db.session() as session:
            for _ in range(target - waiting):
                lifecycle.create_job(session, owner, family="classic", spec=SPEC, queue="cpu", name=None)
        waiting = target
        round_ms = cpu_ms(db, lambda session: dispatcher.run_round(session), args.rounds)
        look_ms = cpu_ms(db, lambda session: dispatcher.round_needed(session), args.rounds)
        rows.append((target, round_ms, look_ms))
        if target == RELEASING_WITH:
            releasing_ms = releasing_round_ms(db, dispatcher, args.rounds)
            with db.session() as session:  # as many wait again as before the rounds released some
                for _ in range(args.rounds + WARM_UP):
                    lifecycle.create_job(session, owner, family="classic", spec=SPEC, queue="cpu", name=None)
    print(
        f"\n{'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}, CPU time of one round, {args.rounds} rounds each:\n"
    )
    print("| jobs waiting | round | round / round with none waiting | look (round needed?) |")
    print("|---|---|---|---|")
    for target, round_ms, look_ms in rows:
        print(f"| {target} | {round_ms:.2f} ms | {round_ms / rows[0][1]:.1f}x | {look_ms:.2f} ms |")
    print(
        f"\nA round that releases one job ({RELEASING_WITH} waiting): {releasing_ms:.2f} ms, "
        f"{releasing_ms / rows[WAITING.index(RELEASING_WITH)][1]:.2f}x the round that sends none with as many waiting"
    )


def releasing_round_ms(db: Database, dispatcher: Dispatcher, rounds: int) -> float:
    """CPU time of a round after a running job ended: it releases one waiting job."""
    spent = 0.0
    for index in range(rounds + WARM_UP):
        with db.session() as session:
            running = session.scalar(select(Job.id).where(Job.status == lifecycle.RUNNING).limit(1))
            lifecycle.finish(session, running, lifecycle.SUCCEEDED)
        start = time.process_time()
        with db.session() as session:
            released = dispatcher.run_round(session)
        if index >= WARM_UP:
            spent += time.process_time() - start
        assert len(released) == 1, released
        with db.session() as session:
            assert lifecycle.claim(session, released[0], "w1")
    return spent / rounds * 1000


if __name__ == "__main__":
    main()
