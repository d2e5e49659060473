"""Running one job: claim it, load its data, train, save the model (if it makes one), record the outcome.

The database session is closed during training (a long job must not hold a
connection) and short sessions record each event.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from service import jobs, logs, storage
from service.config import Settings
from service.db import Database
from service.tables import Dataset, Job, JobEvent, Model, new_id, utcnow
from workers.data import load_arrays, load_table
from workers.trainers import Cancelled, OptimizationResult, TrainedModel, get_trainer
from workers.trainers.network import remove_checkpoints

log = logging.getLogger("labtrain.worker")

MODEL_SUFFIX = {"sklearn": ".skops", "tensorflow": ".keras", "pytorch": ".pt"}
WATCH_SECONDS = 0.5
CANCELLED, OVERDUE, SUPERSEDED = "cancelled", "time_limit_exceeded", "superseded"


class JobWatch:
    """Runs beside the training in the job's own process.

    Twice a second it renews the job's heartbeat (so a lost worker is noticed) and looks
    for a reason to stop: a cancel, the time limit, or another attempt having taken the
    job over. Trainers stop cooperatively within a batch; a job that has not stopped after
    the grace period is recorded and its process killed, so the device is free at once.
    """

    def __init__(self, db: Database, job_id: str, attempt: int, time_limit_s: int | None, grace_s: float):
        self.db, self.job_id, self.attempt = db, job_id, attempt
        self.time_limit_s, self.grace_s = time_limit_s, grace_s
        self.reason: str | None = None
        self.finishing = False  # set before the runner records the outcome itself
        self.stop = threading.Event()
        self._done = threading.Event()
        self._stopping_since = 0.0
        self._thread = threading.Thread(target=self._run, name=f"watch-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        logs.JOB_ID.set(self.job_id)  # a thread starts with a fresh context
        while not self._done.wait(WATCH_SECONDS):
            try:
                self._look()
            except Exception:  # a database hiccup must not kill the job; look again next time
                log.warning("could not check job %s", self.job_id, exc_info=True)
            if self.reason and not self.finishing:
                if self.reason == SUPERSEDED or time.monotonic() - self._stopping_since > self.grace_s:
                    self._kill()

    def _look(self) -> None:
        with self.db.session() as session:
            row = session.execute(select(Job.status, Job.attempt, Job.cancel_requested, Job.started_at)
                                  .where(Job.id == self.job_id)).one()
            if row.status != jobs.RUNNING or row.attempt != self.attempt:
                if not self.finishing:
                    self._set_reason(SUPERSEDED)
                return
            now = utcnow()
            session.execute(update(Job).where(Job.id == self.job_id, Job.attempt == self.attempt)
                            .values(heartbeat_at=now))
        if row.cancel_requested:
            self._set_reason(CANCELLED)
        elif self.time_limit_s and (now - row.started_at).total_seconds() > self.time_limit_s:
            self._set_reason(OVERDUE)

    def _set_reason(self, reason: str) -> None:
        if self.reason is None:
            self.reason, self._stopping_since = reason, time.monotonic()
            self.stop.set()

    def _kill(self) -> None:
        if self.reason != SUPERSEDED:
            status, fields = outcome(self.reason, self.time_limit_s)
            with self.db.session() as session:
                jobs.finish(session, self.job_id, status, attempt=self.attempt, **fields)
        log.error("job %s did not stop within %.0f s (%s); killing its process", self.job_id, self.grace_s,
                  self.reason)
        os.kill(os.getpid(), signal.SIGKILL)


def outcome(reason: str, time_limit_s: int | None) -> tuple[str, dict[str, Any]]:
    """The final status and fields of a job stopped for `reason`."""
    if reason == OVERDUE:
        return jobs.FAILED, {"error_code": "time_limit_exceeded",
                             "error": f"the job ran longer than its time limit of {time_limit_s} s"}
    return jobs.CANCELLED, {}


class DbReporter:
    """Writes a trainer's events and progress to the job's rows; raises Cancelled once asked to stop."""

    def __init__(self, db: Database, job_id: str, job_log: logging.Logger, checkpoint_dir: Path | None,
                 watch: JobWatch):
        self.db, self.job_id, self.log, self.checkpoint_dir, self.watch = db, job_id, job_log, checkpoint_dir, watch
        self._epochs_seen: set[int] | None = None

    def event(self, type_: str, data: dict[str, Any]) -> None:
        self._check()
        with self.db.session() as session:
            if type_ == "epoch" and self._already_reported(session, data["epoch"]):
                return
            jobs.add_event(session, self.job_id, type_, data)
        if type_ == "log":
            self.log.info("%s", data.get("message", data))

    def progress(self, **fields: Any) -> None:
        self._check()
        with self.db.session() as session:
            job = session.get(Job, self.job_id)
            metrics = fields.pop("metrics", None)
            if metrics is not None:
                job.metrics = metrics
            job.progress = {**(job.progress or {}), **fields}

    def stop_requested(self) -> bool:
        return self.watch.stop.is_set()

    def _already_reported(self, session, epoch: int) -> bool:
        # A resumed attempt may repeat the epoch after the last checkpoint: report each epoch once.
        if self._epochs_seen is None:
            rows = session.scalars(select(JobEvent.data).where(JobEvent.job_id == self.job_id,
                                                                JobEvent.type == "epoch"))
            self._epochs_seen = {row.get("epoch") for row in rows}
        if epoch in self._epochs_seen:
            return True
        self._epochs_seen.add(epoch)
        return False

    def _check(self) -> None:
        if self.watch.stop.is_set():
            raise Cancelled()


class JobRunner:
    def __init__(self, settings: Settings, db: Database, worker_name: str):
        self.settings, self.db, self.worker_name = settings, db, worker_name

    def run(self, job_id: str) -> str | None:
        """Run the job if this delivery wins the claim; returns its final status (None: duplicate)."""
        token = logs.JOB_ID.set(job_id)
        try:
            return self._run(job_id)
        finally:
            logs.JOB_ID.reset(token)

    def _run(self, job_id: str) -> str | None:
        with self.db.session() as session:
            attempt = jobs.claim(session, job_id, self.worker_name)
            if attempt is None:
                log.info("job %s was already claimed or is not queued; dropping this delivery", job_id)
                return None
            job = session.get(Job, job_id)
            family, spec, owner_id, time_limit = job.family, job.spec, job.owner_id, job.time_limit_s
            uploaded = _uploaded_file(session, spec.get("dataset"))

        job_log, handler = self._open_job_log(job_id)
        checkpoints = storage.job_dir(self.settings, job_id) / "checkpoints" if family == "network" else None
        watch = JobWatch(self.db, job_id, attempt, time_limit, self.settings.stop_grace_s)
        watch.start()
        reporter = DbReporter(self.db, job_id, job_log, checkpoints, watch)
        status: str | None = None
        try:
            job_log.info("job %s started on %s (attempt %d)", job_id, self.worker_name, attempt)
            data = self._load_data(family, spec, uploaded)
            trained = get_trainer(family)(spec, data, reporter)
            if isinstance(trained, OptimizationResult):
                status = self._succeed_with_result(job_id, attempt, trained, job_log, watch)
            else:
                status = self._succeed(job_id, attempt, owner_id, trained, job_log, watch)
        except Cancelled:
            if watch.reason == SUPERSEDED:
                job_log.warning("job %s attempt %d was taken over by another attempt; stopping", job_id, attempt)
                return None
            job_log.info("job %s stopped: %s", job_id, watch.reason or CANCELLED)
            status, fields = outcome(watch.reason or CANCELLED, time_limit)
            self._finish(job_id, attempt, status, watch, **fields)
        except Exception as exc:  # the job fails; the worker goes on with the next one
            job_log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            message = f"{type(exc).__name__}: {exc}".strip()
            status = self._finish(job_id, attempt, jobs.FAILED, watch, error_code="training_error",
                                  error=f"{message} (the job's log has the full traceback)")
        finally:
            watch.close()
            # Checkpoints outlive a crash (the next attempt resumes from them), not the job's end.
            if status and not spec.get("training", {}).get("keep_checkpoints"):
                remove_checkpoints(checkpoints)
            job_log.removeHandler(handler)
            handler.close()
        return status

    def _load_data(self, family: str, spec: dict[str, Any], uploaded: tuple[str, str] | None):
        if family == "optimize":
            return None  # the spec is the whole problem
        if family == "network":
            return load_arrays(spec, uploaded, self.settings.data_dir)
        return load_table(spec["dataset"], uploaded[1] if uploaded else None)

    def _succeed(self, job_id: str, attempt: int, owner_id: str, trained: TrainedModel, job_log: logging.Logger,
                 watch: JobWatch) -> str:
        if watch.stop.is_set():
            raise Cancelled()
        model_id = new_id()
        path = storage.model_path(self.settings, model_id, MODEL_SUFFIX[trained.framework])
        save_model(trained, path)
        watch.finishing = True
        with self.db.session() as session:
            session.add(Model(
                id=model_id, job_id=job_id, owner_id=owner_id, framework=trained.framework,
                algorithm=trained.algorithm, task=trained.task, input=trained.input, classes=trained.classes,
                class_names=trained.class_names, metrics=trained.metrics, summary=trained.summary,
                meta=trained.extra or None, artifact_path=str(path),
            ))
            result = {"model_id": model_id, "metrics": trained.metrics}
            if "device" in trained.extra:
                result["device"] = trained.extra["device"]
            if not jobs.finish(session, job_id, jobs.SUCCEEDED, attempt=attempt, metrics=trained.metrics,
                               result=result):
                raise RuntimeError("the job is no longer this attempt's to finish")  # rolls the model row back
        job_log.info("job %s succeeded; model %s", job_id, model_id)
        return jobs.SUCCEEDED

    def _succeed_with_result(self, job_id: str, attempt: int, outcome: OptimizationResult, job_log: logging.Logger,
                             watch: JobWatch) -> str:
        """A job whose outcome is its result (an optimisation): no model to save."""
        if watch.stop.is_set():
            raise Cancelled()
        watch.finishing = True
        with self.db.session() as session:
            if not jobs.finish(session, job_id, jobs.SUCCEEDED, attempt=attempt, metrics=outcome.metrics,
                               result=outcome.result):
                raise RuntimeError("the job is no longer this attempt's to finish")
        job_log.info("job %s succeeded", job_id)
        return jobs.SUCCEEDED

    def _finish(self, job_id: str, attempt: int, status: str, watch: JobWatch, **fields: Any) -> str:
        watch.finishing = True
        with self.db.session() as session:
            jobs.finish(session, job_id, status, attempt=attempt, **fields)
        return status

    def _open_job_log(self, job_id: str) -> tuple[logging.Logger, logging.Handler]:
        path = storage.job_log_path(self.settings, job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        # One logger for all jobs: a worker process runs one job at a time.
        job_log = logging.getLogger("labtrain.job")
        job_log.setLevel(logging.INFO)
        job_log.addHandler(handler)
        return job_log, handler


def save_model(trained: TrainedModel, path: Path) -> None:
    """Each framework's own format, written under a temporary name and then renamed."""
    if trained.framework == "sklearn":
        storage.dump_sklearn(trained.artifact, path)
        return
    with storage.atomic_path(path) as tmp:
        if trained.framework == "tensorflow":
            trained.artifact.save(tmp)
        else:
            import torch

            torch.save(trained.artifact.state_dict(), tmp)


def _uploaded_file(session, dataset: Any) -> tuple[str, str] | None:
    if isinstance(dataset, dict):
        row = session.get(Dataset, dataset["id"])
        return (row.kind, row.path) if row else None
    return None
