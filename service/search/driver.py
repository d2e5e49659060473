"""The search driver: runs hyperparameter searches (DESIGN.md decision 9) in the dispatcher.

A search job never occupies a worker. Each step the driver tells the strategy the scores
of the trials that finished, then asks it for new trials and submits each as a child job,
through the same submit path as the API and scheduled by the same fair share, until
`parallel` are queued or running. Optuna keeps the trials in our database and supplies
grid, random and TPE, its trials in a journal file (service/search/studies.py); the seven
metaheuristics are our own ask/tell optimisers. Between steps the search's state is kept as
JSON in its job folder (service/search/state.py), so a restarted dispatcher carries on where
the last one stopped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy import Select, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from service.core import storage, wakeups
from service.core.config import Settings
from service.core.db import Database
from service.core.errors import SpecError
from service.core.orm import Job, JobEvent, User, utcnow
from service.jobs import keep_model, lifecycle, submission
from service.jobs.context import SubmitContext
from service.jobs.lifecycle import FINISHED, QUEUED, RUNNING
from service.search import state as saved
from service.search import studies
from service.search.grid import GridSampler
from service.search.spec import SearchPlan, SearchRun, grid_values
from service.search.state import SearchState, TrialRecord

log = logging.getLogger("labtrain.search")

SEARCH = "search"
LEASE_S = 30  # another dispatcher takes a search over after this long without a step
PENALTY = 1e12  # what a metaheuristic is told for a failed trial (it minimises)


@dataclass
class Trial:
    """What a step reads of a trial's job (so it can work with no session open)."""

    id: str
    trial_number: int
    status: str
    metrics: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None


TRIAL_COLUMNS = (Job.id, Job.trial_number, Job.status, Job.metrics, Job.result, Job.error)  # Trial's fields


def _children(session: Session, parent_id: str, told: set[int]) -> list[Trial]:
    """A search's trials; their outcomes only for those finished and not yet told (a long search
    would otherwise read every trial's metrics at every step)."""
    rows = session.execute(
        select(Job.id, Job.trial_number, Job.status).where(Job.parent_id == parent_id).order_by(Job.trial_number)
    ).all()
    untold = [row.id for row in rows if row.status in FINISHED and row.trial_number not in told]
    whole = (
        {row.id: Trial(*row) for row in session.execute(select(*TRIAL_COLUMNS).where(Job.id.in_(untold)))}
        if untold
        else {}
    )
    return [whole.get(row.id) or Trial(row.id, row.trial_number, row.status, None, None, None) for row in rows]


@cache
def _searches_and_trials() -> Select:
    """The active searches with their trials counted: built once (the dispatcher asks often, and
    building the statement cost more than running it)."""
    trial = aliased(Job)
    return (
        select(
            Job.id,
            Job.status,
            Job.cancel_requested,
            func.count(trial.id),
            func.count(trial.id).filter(trial.status.in_(FINISHED)),
        )
        .outerjoin(trial, trial.parent_id == Job.id)
        .where(Job.family == SEARCH, Job.status.in_((QUEUED, RUNNING)))
        .group_by(Job.id, Job.status, Job.cancel_requested)
    )


def pending_searches(session: Session, seen: dict[str, tuple]) -> tuple[list[str], bool]:
    """Searches that need a step: new, cancelled, or with trials that finished (or went) since
    `seen` was noted, and whether any search is queued or running at all. A trial that only
    started changes nothing a step would do. One statement."""
    rows = session.execute(_searches_and_trials()).all()
    due = [
        parent_id
        for parent_id, status, cancel, trials, finished in rows
        if status == QUEUED or cancel or seen.get(parent_id) != (trials, finished)
    ]
    return due, bool(rows)


def _may_start_a_search(wake: wakeups.Wake) -> bool:
    """A search's new `queued` (a wake-up without a family says nothing of it: it may be)."""
    if wake.channel != wakeups.JOB_EVENTS:
        return True
    return wake.payload.get("status") in (QUEUED, None) and wake.payload.get("family") in (SEARCH, None)


class SearchDriver:
    def __init__(self, settings: Settings, db: Database, name: str):
        self.settings, self.db, self.name = settings, db, name
        # By search, while it runs: its journal and study, the state this driver saved last (with
        # the file's version), and what its trials were at its last step (pending_searches).
        self._journals: dict[str, optuna.storages.JournalStorage] = {}
        self._studies: dict[str, optuna.Study] = {}
        self._states: dict[str, tuple[tuple, SearchState]] = {}
        self._none_active = False  # no search was queued or running at the last look
        self._seen: dict[str, tuple] = {}

    def due(self, session: Session, wakes: list[wakeups.Wake] | None = None) -> list[str]:
        """The searches that need a step (the dispatcher asks in its own look). While no search
        is queued or running, only a job's new `queued` status (a search submitted, or sent back)
        can start one: other wake-ups (`wakes`, None when unknown) skip the look."""
        if self._none_active and wakes is not None and not any(_may_start_a_search(w) for w in wakes):
            return []
        due, active = pending_searches(session, self._seen)
        self._none_active = not active
        return due

    def run(self, due: list[str]) -> list[str]:
        """One step for each of `due`; returns the ids of the trials the steps submitted."""
        submitted = []
        for parent_id in due:
            try:
                submitted += self.step(parent_id)
            except Exception:  # one broken search must not stop the others
                log.exception("search %s: step failed", parent_id)
        return submitted

    def run_pending(self) -> list[str]:
        """One step for each search that needs one; returns the ids of the trials they submitted."""
        with self.db.session() as session:
            due = self.due(session)
        return self.run(due)

    # -- one step -------------------------------------------------------------------------
    # A step never holds a transaction of ours while Optuna works (with SQLite, one writer at
    # a time): read, then Optuna, then write.
    def step(self, parent_id: str) -> list[str]:
        """Returns the ids of the trials it submitted."""
        with self.db.session() as session:
            parent = self._lease(session, parent_id)
            if parent is None:
                return []
            run, cancel = SearchRun.model_validate(parent.spec), parent.cancel_requested
            search = run.search
            folder = storage.job_dir(self.settings, parent_id)
            state = self._load(parent_id, folder, search)
            children = _children(session, parent_id, told=set(state.told))
            announced = _announced(session, parent, state)
        study = self._study(parent_id, folder, search, state)
        asked_ever = study.get_trials(deepcopy=False)  # reads the journal's new lines: once a step
        # Seeded by every trial ever asked (the journal's count, not the state's, which lags after
        # a crash): a step after a dispatcher died never draws what the dead step drew.
        study.sampler = new_sampler(search, asked=len(asked_ever))
        # The job rows are the truth; the state file and the journal catch up with them here.
        orphans = _adopt(asked_ever, state, children, resubmit=not cancel)
        submitted: list[str] = []
        active = sum(1 for c in children if c.status not in FINISHED)
        try:
            outcomes = [
                self._tell(study, state, run, c)
                for c in children
                if c.status in FINISHED and c.trial_number not in state.told
            ]
            outcomes = [event for event in outcomes if event["number"] not in announced]
            while True:
                asked = []
                if not cancel and len(state.told) < search.trials:
                    wanted = max(min(search.parallel - active, search.trials - len(state.trials)), 0)
                    asked, orphans = orphans[:wanted], orphans[wanted:]  # their own numbers first
                    wanted -= len(asked)
                    asked += self._ask(study, state, search, wanted) if wanted > 0 else []
                with self.db.session() as session:
                    rejected = self._submit_all(session, parent_id, run, state, asked)
                    accepted = [state.trials[number].job_id for number, _params in asked]
                    submitted += [job_id for job_id in accepted if job_id]
                    active += len(asked) - len(rejected)
                    if cancel:  # again here: a step running as the cancel came may have submitted more
                        owner = session.get(User, session.get(Job, parent_id).owner_id)
                        lifecycle.cancel_trials(session, parent_id, owner)
                    finished = (cancel and not active) or len(state.told) >= search.trials
                    self._record_progress(session, parent_id, search, state, active, outcomes)
                    if finished:
                        self._finish(session, parent_id, search, state, cancelled=cancel)
                if finished:
                    _close_orphans(study)
                    self._forget(parent_id)
                if not rejected:
                    break
                # A trial whose spec was refused is a failed trial: tell it, then ask again.
                outcomes = [self._record(study, state, search, record) for record in rejected]
        except BaseException:
            # The state file never claims more than the rows: a step whose commit failed (another
            # driver took a trial number first, say) is redone from them by the next step.
            self._states.pop(parent_id, None)
            raise
        self._save(parent_id, folder, state)
        # What this step saw: the trials as read at its start, plus those it submitted. A trial
        # that finished meanwhile makes the next look differ, so it gets a step of its own.
        known = {c.id for c in children}
        trials = len(children) + sum(1 for r in state.trials.values() if r.job_id and r.job_id not in known)
        self._seen[parent_id] = (trials, sum(1 for c in children if c.status in FINISHED))
        return submitted

    def _load(self, parent_id: str, folder: Path, search: SearchPlan) -> SearchState:
        """The state this driver saved last, while the file is still that one (another driver
        that took the search over writes a new file); else read from the file."""
        kept = self._states.get(parent_id)
        if kept is not None and kept[0] == _file_version(folder / saved.STATE_FILE):
            return kept[1]
        return saved.load(folder, search)

    def _save(self, parent_id: str, folder: Path, state: SearchState) -> None:
        self._states.pop(parent_id, None)
        saved.save(folder, state)
        self._states[parent_id] = (_file_version(folder / saved.STATE_FILE), state)

    def _forget(self, parent_id: str) -> None:
        """A search that ended: nothing of it is kept."""
        for kept in (self._journals, self._studies, self._states, self._seen):
            kept.pop(parent_id, None)

    def _lease(self, session: Session, parent_id: str) -> Job | None:
        """Take (or renew) the search for this driver and return it; None while another driver
        holds it. Renewed only when a third of the lease has passed: a step often runs many
        times a second, and each would write the row."""
        now = utcnow()
        parent = session.get(Job, parent_id)
        if parent is None or parent.family != SEARCH or parent.status not in (QUEUED, RUNNING):
            return None
        fresh = parent.heartbeat_at is not None and parent.heartbeat_at >= now - timedelta(seconds=LEASE_S / 3)
        if fresh and parent.status == RUNNING and parent.worker == self.name:
            return parent
        if fresh and parent.worker not in (None, self.name):
            return None  # held by another driver, which renewed it lately
        taken = session.execute(
            update(Job)
            .where(
                Job.id == parent_id,
                Job.family == SEARCH,
                Job.status.in_((QUEUED, RUNNING)),
                or_(Job.worker.is_(None), Job.worker == self.name, Job.heartbeat_at < now - timedelta(seconds=LEASE_S)),
            )
            .values(worker=self.name, heartbeat_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not taken:
            return None
        started = session.execute(
            update(Job)
            .where(Job.id == parent_id, Job.status == QUEUED)
            .values(status=RUNNING, attempt=1, started_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if started:
            lifecycle.add_event(session, parent_id, "status", {"status": RUNNING, "worker": self.name})
        return session.get(Job, parent_id, populate_existing=True)

    def _tell(self, study, state: SearchState, run: SearchRun, child: Trial) -> dict[str, Any]:
        search = run.search
        value = (
            run.hooks().score(run.base_run(), child.metrics, search.metric)
            if child.status == lifecycle.SUCCEEDED
            else None
        )
        error = (
            child.error
            if child.status != lifecycle.SUCCEEDED
            else (None if value is not None else f"the trial's metrics have no {search.metric}")
        )
        record = state.trials.get(child.trial_number) or TrialRecord(
            child.trial_number, study.trials[child.trial_number].params, child.id
        )  # asked before a crash
        record.value, record.status, record.error = value, child.status, error
        record.model_id, record.metrics = (child.result or {}).get("model_id"), child.metrics
        return self._record(study, state, search, record)

    def _record(self, study, state: SearchState, search: SearchPlan, record: TrialRecord) -> dict[str, Any]:
        """A trial's outcome, to Optuna, to the strategy and to the curve; returns its `trial` event."""
        state.trials[record.number] = record
        state.told.append(record.number)
        if record.value is None:
            study.tell(record.number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            study.tell(record.number, record.value, skip_if_finished=True)
        if state.optimizer is not None:
            internal = (
                PENALTY if record.value is None else (-record.value if search.direction == "maximize" else record.value)
            )
            state.optimizer.tell(state.optimizer.space.encode(record.params)[None], np.array([internal]))
        best = _best(state, search.direction)
        state.curve.append(best.value if best else None)
        return {**record.view(), "best_value": best.value if best else None}

    def _ask(self, study, state: SearchState, search: SearchPlan, count: int) -> list[tuple[int, dict]]:
        """Up to `count` new trials; fewer (or none) while the strategy waits for running ones."""
        distributions = {name: _distribution(dim) for name, dim in search.space.items()}
        if state.optimizer is None:
            trials = [study.ask(distributions) for _ in range(count)]
            return [(trial.number, trial.params) for trial in trials]
        asked = []
        for x in state.optimizer.ask(count):
            params = {name: _snap(search.space[name], value) for name, value in state.optimizer.space.decode(x).items()}
            study.enqueue_trial(params)
            asked.append((study.ask(distributions).number, params))
        return asked

    def _submit_all(self, session, parent_id, run: SearchRun, state: SearchState, asked) -> list[TrialRecord]:
        """Each asked trial as a child job; returns those whose spec was refused."""
        if not asked:
            return []
        parent = session.get(Job, parent_id)
        ctx = SubmitContext(session, self.settings, session.get(User, parent.owner_id))
        rejected = []
        for number, params in asked:
            record = state.trials[number] = TrialRecord(number, params)
            payload = run.hooks().apply(run.search.base, run.base_run(), params)
            payload["name"] = f"{parent.name or 'search'} · trial {number}"
            try:
                record.job_id = submission.submit(
                    ctx, payload, trial_of=parent, trial_number=number, keep_model=_keep_model(run.search, state)
                ).id
            except SpecError as exc:  # e.g. two parameters that conflict: a failed trial, not a failed search
                record.status, record.error = lifecycle.FAILED, exc.message
                rejected.append(record)
        return rejected

    def _finish(self, session, parent_id, search: SearchPlan, state: SearchState, cancelled: bool = False) -> None:
        best = _best(state, search.direction)
        result = {
            "best_value": best.value if best else None,
            "best_params": best.params if best else None,
            "evaluations": len(state.told),
            "curve": state.curve,
            "trials": leaderboard(state, search.direction),
        }
        fields: dict[str, Any] = {"result": result}
        if best:
            result.update(model_id=best.model_id, metrics=best.metrics, best_trial=best.job_id)
            fields["metrics"] = best.metrics
            status = lifecycle.CANCELLED if cancelled else lifecycle.SUCCEEDED
        elif cancelled:
            status = lifecycle.CANCELLED
        else:
            status = lifecycle.FAILED
            first = next((r.error for r in state.trials.values() if r.error), "no trial gave a score")
            fields.update(
                error_code="all_trials_failed", error=f"all {len(state.told)} trials failed; the first said: {first}"
            )
        if lifecycle.finish(session, parent_id, status, **fields):
            log.info("search %s %s after %d trials", parent_id, status, len(state.told))

    def _record_progress(
        self, session, parent_id, search: SearchPlan, state: SearchState, active: int, outcomes: list[dict]
    ) -> None:
        """The outcomes' `trial` events, the search's progress and its metrics (the best so far,
        while it runs; _finish, after, writes the final ones): one UPDATE of its row, which it
        does not read first, and one INSERT of the events."""
        best = _best(state, search.direction)
        values: dict[str, Any] = {
            "progress": {
                "trials_done": len(state.told),
                "trials": search.trials,
                "trials_started": len(state.trials),
                "running": active,
                "fraction": len(state.told) / search.trials,
                "best_value": best.value if best else None,
                "best_params": best.params if best else None,
            }
        }
        if best:
            metrics = bindparam(
                "best_metrics", {search.metric: best.value, "best_trial": best.job_id}, Job.metrics.type
            )
            values["metrics"] = case((Job.status == RUNNING, metrics), else_=Job.metrics)
        lifecycle.add_events(session, parent_id, [("trial", event, utcnow()) for event in outcomes], **values)

    # -- Optuna ---------------------------------------------------------------------------
    def _study(self, parent_id: str, folder, search: SearchPlan, state: SearchState):
        """The search's study, opened once while it runs (opening appends to the journal); each
        step gives it its sampler."""
        name = f"labtrain-{parent_id}"
        if parent_id not in self._journals:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self._journals[parent_id] = studies.open_journal(
                folder, name, self.settings.database_url, begun=bool(state.trials)
            )
        study = self._studies.get(parent_id)
        if study is None:
            study = self._studies[parent_id] = optuna.create_study(
                study_name=name, storage=self._journals[parent_id], direction=search.direction, load_if_exists=True
            )
        return study


def new_sampler(search: SearchPlan, asked: int):
    """Optuna's sampler for this step. A sampler keeps nothing between steps that the study does
    not (but its random generator), so it is built anew, seeded by the search's seed and how
    many trials were asked before: a search replays the same way, and no two steps draw alike.
    A metaheuristic's trials come with every parameter fixed, so its sampler never draws."""
    if search.strategy == "grid":
        # The grid's order comes from its seed, and its trials are numbered into that order:
        # the same seed every step, so trial n is always the same point.
        return GridSampler({name: grid_values(dim) for name, dim in search.space.items()}, seed=search.seed)
    seed = int(np.random.SeedSequence([search.seed, asked]).generate_state(1)[0])
    if search.strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=search.parallel > 1, **search.params)
    return optuna.samplers.RandomSampler(seed=seed)


def _file_version(path: Path) -> tuple | None:
    """What tells one write of a file from another (each save renames a new file in)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _adopt(asked: list, state: SearchState, children: list[Trial], resubmit: bool) -> list[tuple[int, dict]]:
    """Reconciles the state with the job rows, after a step that died (a dispatcher killed)
    between asking Optuna, committing the trials' jobs and saving the state. A row the state
    misses joins it (else the search would ask one trial too many); a trial Optuna asked that
    has no row is returned, to submit under its own number (else that number would be missing
    from the search), and leaves the state until it is. A metaheuristic's optimiser asks
    afresh instead (its saved state predates the lost ask): such a number stays unused, failed
    in the journal at the end (`_close_orphans`)."""
    rows = {child.trial_number: child for child in children}
    for number in rows.keys() - state.trials.keys():
        state.trials[number] = TrialRecord(number, asked[number].params, rows[number].id)
    if not resubmit or state.optimizer is not None:
        return []
    unsubmitted = [t for t in asked if t.state == TrialState.RUNNING and t.number not in rows]
    for trial in unsubmitted:
        state.trials.pop(trial.number, None)  # a record whose job's commit never came
    return [(trial.number, trial.params) for trial in unsubmitted]


def _announced(session: Session, parent: Job, state: SearchState) -> set[int]:
    """The trials whose `trial` event a step committed but whose tell its state file missed (it
    died before saving): told again to the strategy, never announced twice. The progress,
    written in the same commit as the events, says when there are any; most steps read nothing."""
    if (parent.progress or {}).get("trials_done", 0) <= len(state.told):
        return set()
    events = session.scalars(select(JobEvent.data).where(JobEvent.job_id == parent.id, JobEvent.type == "trial"))
    return {event["number"] for event in events} - set(state.told)


def _close_orphans(study) -> None:
    """Trials Optuna still holds as running when the search ends were asked by a step that
    stopped before submitting them (a dispatcher that died mid-step): record them as failed."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def _distribution(dim: dict[str, Any]):
    if dim["type"] == "categorical":
        return CategoricalDistribution(dim["choices"])
    if dim["type"] == "int":
        return IntDistribution(dim["low"], dim["high"], log=dim["log"], step=dim["step"] or 1)
    return FloatDistribution(dim["low"], dim["high"], log=dim["log"], step=dim["step"])


def _snap(dim: dict[str, Any], value: Any) -> Any:
    """A metaheuristic's value on the dimension's step, as Optuna's distribution expects."""
    step = dim.get("step")
    if not step or dim["type"] == "categorical":
        return value
    snapped = dim["low"] + round((value - dim["low"]) / step) * step
    snapped = min(max(snapped, dim["low"]), dim["high"])
    return int(snapped) if dim["type"] == "int" else snapped


def _best(state: SearchState, direction: str) -> TrialRecord | None:
    scored = [state.trials[n] for n in state.told if state.trials[n].value is not None]
    if not scored:
        return None
    sign = -1 if direction == "maximize" else 1
    return min(scored, key=lambda r: (sign * r.value, r.number))


def _keep_model(search: SearchPlan, state: SearchState) -> dict[str, Any] | None:
    """When a trial submitted now keeps its model (keep_models "best": if it scores at least
    the best so far; service/jobs/keep_model.py); None: it keeps it whatever it scores."""
    best = _best(state, search.direction) if search.keep_models == "best" else None
    return keep_model.rule(search.metric, search.direction, best.value if best else None)


def leaderboard(state: SearchState, direction: str) -> list[dict[str, Any]]:
    """Every trial told, best first; trials without a score last, by number."""
    sign = -1 if direction == "maximize" else 1
    records = [state.trials[n] for n in state.told]
    return [r.view() for r in sorted(records, key=lambda r: (r.value is None, sign * (r.value or 0), r.number))]
