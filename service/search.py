"""The search driver: runs hyperparameter searches (DESIGN.md decision 9) in the dispatcher.

A search job never occupies a worker. Each step the driver tells the strategy the scores
of the trials that finished, then asks it for new trials and submits each as a child job,
validated like any submission and scheduled by the same fair share, until `parallel` are
queued or running. Optuna keeps the trials in our database and supplies grid, random and
TPE; the seven metaheuristics are our own ask/tell optimisers. Between steps the sampler or
optimiser is pickled into the job's directory (a file only the service writes), so a
restarted dispatcher carries on where the last one stopped.
"""
from __future__ import annotations

import logging
import pickle
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from service import jobs, storage
from service.config import Settings
from service.db import Database
from service.errors import SpecError
from service.jobs import FINISHED, QUEUED, RUNNING
from service.limits import effective_limits
from service.search_specs import METAHEURISTICS, apply_params, grid_values, trial_score
from service.submission import validate_submission
from service.tables import Job, User, utcnow

log = logging.getLogger("labtrain.search")

SEARCH = "search"
LEASE_S = 30          # another dispatcher takes a search over after this long without a step
PENALTY = 1e12        # what a metaheuristic is told for a failed trial (it minimises)


@dataclass
class Trial:
    """What a step reads of a trial's job (so it can work with no session open)."""

    id: str
    trial_number: int
    status: str
    metrics: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None

    @classmethod
    def of(cls, job: Job) -> "Trial":
        return cls(job.id, job.trial_number, job.status, job.metrics, job.result, job.error)


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    job_id: str | None = None
    value: float | None = None
    status: str = QUEUED
    error: str | None = None
    model_id: str | None = None
    metrics: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        return {"number": self.number, "id": self.job_id, "params": self.params, "value": self.value,
                "status": self.status, "error": self.error}


@dataclass
class SearchState:
    """What a search remembers between steps."""

    strategy: Any                                   # an Optuna sampler or one of our optimisers
    trials: dict[int, TrialRecord] = field(default_factory=dict)
    told: list[int] = field(default_factory=list)   # trial numbers in the order their scores came
    curve: list[float | None] = field(default_factory=list)


def pending_searches(session: Session, seen: dict[str, tuple]) -> list[str]:
    """Searches that need a step: new, cancelled, or whose trials changed since `seen` was noted."""
    parents = session.execute(select(Job.id, Job.status, Job.cancel_requested).where(
        Job.family == SEARCH, Job.status.in_((QUEUED, RUNNING)))).all()
    if not parents:
        return []
    counts: dict[str, dict[str, int]] = {}
    for parent_id, status, count in session.execute(
            select(Job.parent_id, Job.status, func.count()).where(Job.parent_id.in_([p.id for p in parents]))
            .group_by(Job.parent_id, Job.status)):
        counts.setdefault(parent_id, {})[status] = count
    due = []
    for parent in parents:
        fingerprint = tuple(sorted(counts.get(parent.id, {}).items()))
        if parent.status == QUEUED or parent.cancel_requested or seen.get(parent.id) != fingerprint:
            due.append(parent.id)
    return due


class SearchDriver:
    def __init__(self, settings: Settings, db: Database, name: str):
        self.settings, self.db, self.name = settings, db, name
        self._storage = None
        self._seen: dict[str, tuple] = {}

    def run_pending(self) -> int:
        """One step for each search that needs one; returns how many were stepped."""
        with self.db.session() as session:
            due = pending_searches(session, self._seen)
        for parent_id in due:
            try:
                self.step(parent_id)
            except Exception:  # one broken search must not stop the others
                log.exception("search %s: step failed", parent_id)
        return len(due)

    # -- one step -------------------------------------------------------------------------
    # Optuna writes through its own connection; with SQLite there is one writer at a time, so
    # a step never holds a transaction of ours while Optuna works: read, then Optuna, then write.
    def step(self, parent_id: str) -> None:
        with self.db.session() as session:
            if not self._lease(session, parent_id):
                return
            parent = session.get(Job, parent_id)
            spec, cancel = parent.spec, parent.cancel_requested
            children = [Trial.of(c) for c in session.scalars(select(Job).where(Job.parent_id == parent_id))]
        search = spec["search"]
        state = self._load_state(parent_id, search)
        study = self._study(parent_id, search, state)
        active = sum(1 for c in children if c.status not in FINISHED)
        try:
            outcomes = [self._tell(study, state, spec, c) for c in children
                        if c.status in FINISHED and c.trial_number not in state.told]
            while True:
                asked = []
                if not cancel and len(state.told) < search["trials"]:
                    wanted = min(search["parallel"] - active, search["trials"] - len(state.trials))
                    asked = self._ask(study, state, search, wanted) if wanted > 0 else []
                with self.db.session() as session:
                    for event in outcomes:
                        jobs.add_event(session, parent_id, "trial", event)
                    rejected = self._submit_all(session, parent_id, spec, state, asked)
                    active += len(asked) - len(rejected)
                    if cancel:  # again here: a step running as the cancel came may have submitted more
                        jobs.cancel_trials(session, parent_id, session.get(User, session.get(Job, parent_id).owner_id))
                    finished = (cancel and not active) or len(state.told) >= search["trials"]
                    if finished:
                        self._finish(session, parent_id, spec, state, cancelled=cancel)
                    self._record_progress(session, parent_id, spec, state, active)
                if finished:
                    _close_orphans(study)
                if not rejected:
                    break
                # A trial whose spec was refused is a failed trial: tell it, then ask again.
                outcomes = [self._record(study, state, spec, record) for record in rejected]
        finally:
            self._save_state(parent_id, state)
        # What this step saw: the trials as read at its start, plus those it submitted. A trial
        # that finished meanwhile makes the next look differ, so it gets a step of its own.
        seen = Counter(c.status for c in children)
        seen[QUEUED] += sum(1 for r in state.trials.values() if r.job_id and r.job_id not in {c.id for c in children})
        self._seen[parent_id] = tuple(sorted((status, n) for status, n in seen.items() if n))

    def _lease(self, session: Session, parent_id: str) -> bool:
        """Take (or renew) the search for this driver; False while another driver holds it."""
        now = utcnow()
        taken = session.execute(update(Job).where(
            Job.id == parent_id, Job.family == SEARCH, Job.status.in_((QUEUED, RUNNING)),
            or_(Job.worker.is_(None), Job.worker == self.name,
                Job.heartbeat_at < now - timedelta(seconds=LEASE_S)),
        ).values(worker=self.name, heartbeat_at=now)).rowcount
        if not taken:
            return False
        started = session.execute(update(Job).where(Job.id == parent_id, Job.status == QUEUED).values(
            status=RUNNING, attempt=1, started_at=now)).rowcount
        if started:
            jobs.add_event(session, parent_id, "status", {"status": RUNNING, "worker": self.name})
        return True

    def _tell(self, study, state: SearchState, spec, child: "Trial") -> dict[str, Any]:
        search = spec["search"]
        value = trial_score(spec, child.metrics) if child.status == jobs.SUCCEEDED else None
        error = child.error if child.status != jobs.SUCCEEDED else (
            None if value is not None else f"the trial's metrics have no {search['metric']}")
        record = state.trials.get(child.trial_number) or TrialRecord(
            child.trial_number, study.trials[child.trial_number].params, child.id)  # asked before a crash
        record.value, record.status, record.error = value, child.status, error
        record.model_id, record.metrics = (child.result or {}).get("model_id"), child.metrics
        return self._record(study, state, spec, record)

    def _record(self, study, state: SearchState, spec, record: TrialRecord) -> dict[str, Any]:
        """A trial's outcome, to Optuna, to the strategy and to the curve; returns its `trial` event."""
        from optuna.trial import TrialState

        search = spec["search"]
        state.trials[record.number] = record
        state.told.append(record.number)
        if record.value is None:
            study.tell(record.number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            study.tell(record.number, record.value, skip_if_finished=True)
        if search["strategy"] in METAHEURISTICS:
            internal = PENALTY if record.value is None else (
                -record.value if search["direction"] == "maximize" else record.value)
            state.strategy.tell(state.strategy.space.encode(record.params)[None], np.array([internal]))
        best = _best(state, search["direction"])
        state.curve.append(best.value if best else None)
        return {**record.view(), "best_value": best.value if best else None}

    def _ask(self, study, state: SearchState, search: dict[str, Any], count: int) -> list[tuple[int, dict]]:
        """Up to `count` new trials; fewer (or none) while the strategy waits for running ones."""
        distributions = {name: _distribution(dim) for name, dim in search["space"].items()}
        if search["strategy"] not in METAHEURISTICS:
            trials = [study.ask(distributions) for _ in range(count)]
            return [(trial.number, trial.params) for trial in trials]
        asked = []
        for x in state.strategy.ask(count):
            params = {name: _snap(search["space"][name], value)
                      for name, value in state.strategy.space.decode(x).items()}
            study.enqueue_trial(params)
            asked.append((study.ask(distributions).number, params))
        return asked

    def _submit_all(self, session, parent_id, spec, state: SearchState, asked) -> list[TrialRecord]:
        """Each asked trial as a child job; returns those whose spec was refused."""
        parent = session.get(Job, parent_id)
        owner = session.get(User, parent.owner_id)
        rejected = []
        for number, params in asked:
            record = state.trials[number] = TrialRecord(number, params)
            try:
                record.job_id = self._submit(session, parent, owner, spec, record)
            except SpecError as exc:  # e.g. two parameters that conflict: a failed trial, not a failed search
                record.status, record.error = jobs.FAILED, exc.message
                rejected.append(record)
        return rejected

    def _submit(self, session, parent: Job, owner: User, spec, record: TrialRecord) -> str:
        payload = apply_params(spec["trial_family"], spec["search"]["base"], spec, record.params)
        payload["name"] = f"{parent.name or 'search'} · trial {record.number}"
        validated = validate_submission(session, owner, self.settings.data_dir, payload)
        child = jobs.create_job(session, owner, family=validated.family, spec=validated.spec, queue=validated.queue,
                                name=validated.spec.get("name"),
                                time_limit_s=effective_limits(self.settings, owner)["max_run_time_s"],
                                max_attempts=self.settings.max_attempts)
        child.parent_id, child.trial_number, child.priority = parent.id, record.number, parent.priority
        session.flush()
        return child.id

    def _finish(self, session, parent_id, spec, state: SearchState, cancelled: bool = False) -> None:
        search = spec["search"]
        best = _best(state, search["direction"])
        result = {
            "best_value": best.value if best else None,
            "best_params": best.params if best else None,
            "evaluations": len(state.told),
            "curve": state.curve,
            "trials": leaderboard(state, search["direction"]),
        }
        fields: dict[str, Any] = {"result": result}
        if best:
            result.update(model_id=best.model_id, metrics=best.metrics, best_trial=best.job_id)
            fields["metrics"] = best.metrics
            status = jobs.CANCELLED if cancelled else jobs.SUCCEEDED
        elif cancelled:
            status = jobs.CANCELLED
        else:
            status = jobs.FAILED
            first = next((r.error for r in state.trials.values() if r.error), "no trial gave a score")
            fields.update(error_code="all_trials_failed",
                          error=f"all {len(state.told)} trials failed; the first said: {first}")
        if jobs.finish(session, parent_id, status, **fields):
            log.info("search %s %s after %d trials", parent_id, status, len(state.told))

    def _record_progress(self, session, parent_id, spec, state: SearchState, active: int) -> None:
        search = spec["search"]
        parent = session.get(Job, parent_id)
        best = _best(state, search["direction"])
        parent.progress = {
            "trials_done": len(state.told), "trials": search["trials"], "trials_started": len(state.trials),
            "running": active, "fraction": len(state.told) / search["trials"],
            "best_value": best.value if best else None, "best_params": best.params if best else None,
        }
        if best and parent.status == RUNNING:
            parent.metrics = {search["metric"]: best.value, "best_trial": best.job_id}

    # -- Optuna and the strategy's state ------------------------------------------------------
    def _study(self, parent_id: str, search: dict[str, Any], state: SearchState):
        import optuna

        if self._storage is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self._storage = optuna.storages.RDBStorage(self.settings.database_url)
        # A metaheuristic's trials come with every parameter fixed, so Optuna's sampler never draws.
        sampler = state.strategy if search["strategy"] not in METAHEURISTICS else optuna.samplers.RandomSampler()
        return optuna.create_study(study_name=f"labtrain-{parent_id}", storage=self._storage,
                                   direction=search["direction"], load_if_exists=True, sampler=sampler)

    def _state_path(self, parent_id: str):
        return storage.job_dir(self.settings, parent_id) / "search-state.pickle"

    def _load_state(self, parent_id: str, search: dict[str, Any]) -> SearchState:
        path = self._state_path(parent_id)
        if path.exists():
            return pickle.loads(path.read_bytes())  # written by this service only (decision 7)
        return SearchState(strategy=new_strategy(search))

    def _save_state(self, parent_id: str, state: SearchState) -> None:
        storage.write_atomically(self._state_path(parent_id), pickle.dumps(state))


def _close_orphans(study) -> None:
    """Trials Optuna still holds as running when the search ends were asked by a step that
    stopped before submitting them (a dispatcher that died mid-step): record them as failed."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def new_strategy(search: dict[str, Any]):
    """The search's sampler (Optuna) or optimiser (ours), fresh."""
    import optuna

    strategy, seed, params = search["strategy"], search["seed"], search["params"]
    if strategy == "grid":
        from service.search_grid import GridSampler

        return GridSampler({name: grid_values(dim) for name, dim in search["space"].items()},
                                           seed=seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=search["parallel"] > 1, **params)
    from service.optimizers import Space, strategies
    from service.optimizers.base import Dimension

    space = Space(tuple(Dimension(name, dim["type"], dim.get("low") or 0.0, dim.get("high") or 1.0,
                                  dim.get("log", False), tuple(dim.get("choices") or ()))
                        for name, dim in search["space"].items()))
    return strategies()[strategy](space, search["trials"], seed, **params)


def _distribution(dim: dict[str, Any]):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

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


def leaderboard(state: SearchState, direction: str) -> list[dict[str, Any]]:
    """Every trial told, best first; trials without a score last, by number."""
    sign = -1 if direction == "maximize" else 1
    records = [state.trials[n] for n in state.told]
    return [r.view() for r in sorted(records, key=lambda r: (r.value is None, sign * (r.value or 0), r.number))]
