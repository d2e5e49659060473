"""What a dispatcher round costs as the queue grows: the CPU time of one round (and of the look
that decides whether to run one) with 0, 100, 300 and 1000 jobs waiting, against a round with
none waiting, measured in the same run.

In process, on a fresh SQLite database or, with `--database`, an empty PostgreSQL one: one
owner's iris jobs wait on the cpu queue, a worker of 2 slots is online and busy, so each round
reads and orders every waiting job and sends none (the round of a burst, between two ends).

    .venv/bin/python bench/round_cost.py [--rounds 50] [--database postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.core.broker import make_celery
from service.core.config import Settings
from service.core.db import Database
from service.core.migrate import upgrade
from service.dispatcher import Dispatcher
from service.jobs import lifecycle
from service.lab.users import create_user
from tests.support.workers import heartbeat

SPEC = {"dataset": "iris", "algorithm": "knn"}
WAITING = (0, 100, 300, 1000)


def cpu_ms(db: Database, work, rounds: int) -> float:
    for _ in range(5):  # warm-up: statement caches, the first round's imports
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
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="labtrain-round-"))
    url = args.database or f"sqlite:///{home}/labtrain.db"
    settings = Settings.from_env_map({"LABTRAIN_HOME": str(home), "LABTRAIN_DATABASE_URL": url})
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
    print(
        f"\n{'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}, CPU time of one round, {args.rounds} rounds each:\n"
    )
    print("| jobs waiting | round | round / round with none waiting | look (round needed?) |")
    print("|---|---|---|---|")
    for target, round_ms, look_ms in rows:
        print(f"| {target} | {round_ms:.2f} ms | {round_ms / rows[0][1]:.1f}x | {look_ms:.2f} ms |")


if __name__ == "__main__":
    main()
