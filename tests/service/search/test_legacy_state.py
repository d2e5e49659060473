"""Searches started before the search state became JSON finish with today's code: the old
pickled state is read once (its classes mapped to where they live now), rewritten as JSON,
and the search goes on from where it stopped, each trial told once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from service.core.config import Settings
from service.core.db import Database
from service.core.migrate import upgrade
from service.core.orm import Job, JobEvent
from service.search.driver import SearchDriver
from service.search.state import LEGACY_STATE_FILE, STATE_FILE
from workers.runner import JobRunner

OLD_DEPLOYMENT = Path(__file__).parent / "legacy_deployment"
GA_SEARCH, TPE_SEARCH = "01a225b048ecb08e1d5b7a", "01a225b048fedef6bde3fd"


@pytest.fixture
def old_deployment(tmp_path):
    shutil.copy(OLD_DEPLOYMENT / "labtrain.db", tmp_path / "labtrain.db")
    for search in (GA_SEARCH, TPE_SEARCH):
        folder = tmp_path / "artifacts" / "jobs" / search
        folder.mkdir(parents=True)
        shutil.copy(OLD_DEPLOYMENT / "jobs" / search / LEGACY_STATE_FILE, folder / LEGACY_STATE_FILE)
    settings = Settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'labtrain.db'}",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        data_dir=tmp_path / "datasets",
        artifact_dir=tmp_path / "artifacts",
    )
    settings.ensure_dirs()
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    yield settings, db
    db.dispose()


def test_old_searches_finish_with_the_new_code(old_deployment):
    settings, db = old_deployment
    with db.session() as session:
        before = {
            job.id: job.progress["trials_done"]
            for job in session.scalars(select(Job).where(Job.id.in_((GA_SEARCH, TPE_SEARCH))))
        }
    assert before == {GA_SEARCH: 4, TPE_SEARCH: 3}  # what the old code had told

    driver, runner = SearchDriver(settings, db, "new-dispatcher"), JobRunner(settings, db, "new-worker")
    for _ in range(40):
        driver.run_pending()
        with db.session() as session:
            searches = {job.id: job.status for job in session.scalars(select(Job).where(Job.family == "search"))}
            queued = session.scalars(
                select(Job.id).where(Job.parent_id.is_not(None), Job.status == "queued").order_by(Job.id)
            ).all()
        if set(searches.values()) == {"succeeded"}:
            break
        for job_id in queued:
            runner.run(job_id)
    assert searches == {GA_SEARCH: "succeeded", TPE_SEARCH: "succeeded"}

    with db.session() as session:
        for search_id, trials in ((GA_SEARCH, 8), (TPE_SEARCH, 6)):
            search = session.get(Job, search_id)
            board = search.result["trials"]
            assert sorted(t["number"] for t in board) == list(range(trials))  # each trial told once
            assert all(t["status"] == "succeeded" and t["value"] is not None for t in board)
            assert search.result["evaluations"] == trials and len(search.result["curve"]) == trials
            assert search.result["best_value"] == max(t["value"] for t in board)
            children = session.scalars(select(Job).where(Job.parent_id == search_id)).all()
            assert sorted(c.trial_number for c in children) == list(range(trials))
            told = [
                e.data["number"]
                for e in session.scalars(select(JobEvent).where(JobEvent.job_id == search_id, JobEvent.type == "trial"))
            ]
            assert sorted(told) == list(range(trials))

            folder = settings.artifact_dir / "jobs" / search_id
            assert not (folder / LEGACY_STATE_FILE).exists()
            state = json.loads((folder / STATE_FILE).read_text())
            assert state["version"] == 1 and len(state["told"]) == trials
    # The GA carried its population over: its state is an optimiser's, not a fresh one's.
    ga_state = json.loads((settings.artifact_dir / "jobs" / GA_SEARCH / STATE_FILE).read_text())
    assert ga_state["optimizer"]["told"] == 8 and "__ndarray__" in ga_state["optimizer"]["pop"]
