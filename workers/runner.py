"""Running one job: claim it, load its data, train, save the model, record the outcome.

The database session is closed during training (a long job must not hold a
connection) and short sessions record each event.
"""
from __future__ import annotations

import logging
import traceback
from typing import Any

from service import jobs, storage
from service.config import Settings
from service.db import Database
from service.tables import Dataset, Job, Model, new_id, utcnow
from workers.data import load_table
from workers.trainers import Cancelled, TrainedModel, get_trainer

log = logging.getLogger("labtrain.worker")

MODEL_SUFFIX = {"sklearn": ".skops"}


class DbReporter:
    """Writes a trainer's events and progress to the job's rows; raises Cancelled once asked to stop."""

    def __init__(self, db: Database, job_id: str, job_log: logging.Logger):
        self.db, self.job_id, self.log = db, job_id, job_log

    def event(self, type_: str, data: dict[str, Any]) -> None:
        with self.db.session() as session:
            self._check(session)
            jobs.add_event(session, self.job_id, type_, data)
        if type_ == "log":
            self.log.info("%s", data.get("message", data))

    def progress(self, **fields: Any) -> None:
        with self.db.session() as session:
            self._check(session)
            job = session.get(Job, self.job_id)
            job.progress = {**(job.progress or {}), **fields}
            job.heartbeat_at = utcnow()

    def _check(self, session) -> None:
        if jobs.cancel_requested(session, self.job_id):
            raise Cancelled()


class JobRunner:
    def __init__(self, settings: Settings, db: Database, worker_name: str):
        self.settings, self.db, self.worker_name = settings, db, worker_name

    def run(self, job_id: str) -> str | None:
        """Run the job if this delivery wins the claim; returns its final status (None: duplicate)."""
        with self.db.session() as session:
            if not jobs.claim(session, job_id, self.worker_name):
                log.info("job %s was already claimed or is not queued; dropping this delivery", job_id)
                return None
            job = session.get(Job, job_id)
            family, spec, owner_id = job.family, job.spec, job.owner_id
            dataset_path = _uploaded_path(session, spec.get("dataset"))

        job_log, handler = self._open_job_log(job_id)
        reporter = DbReporter(self.db, job_id, job_log)
        try:
            job_log.info("job %s started on %s", job_id, self.worker_name)
            data = load_table(spec["dataset"], dataset_path)
            trained = get_trainer(family)(spec, data, reporter)
            return self._succeed(job_id, owner_id, trained, job_log)
        except Cancelled:
            job_log.info("job %s cancelled", job_id)
            return self._finish(job_id, jobs.CANCELLED)
        except Exception as exc:  # the job fails; the worker goes on with the next one
            job_log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            message = f"{type(exc).__name__}: {exc}".strip()
            return self._finish(job_id, jobs.FAILED, error_code="training_error",
                                error=f"{message} (the job's log has the full traceback)")
        finally:
            job_log.removeHandler(handler)
            handler.close()

    def _succeed(self, job_id: str, owner_id: str, trained: TrainedModel, job_log: logging.Logger) -> str:
        with self.db.session() as session:
            if jobs.cancel_requested(session, job_id):
                raise Cancelled()
        model_id = new_id()
        path = storage.model_path(self.settings, model_id, MODEL_SUFFIX[trained.framework])
        storage.dump_sklearn(trained.artifact, path)
        with self.db.session() as session:
            session.add(Model(
                id=model_id, job_id=job_id, owner_id=owner_id, framework=trained.framework,
                algorithm=trained.algorithm, task=trained.task, input=trained.input, classes=trained.classes,
                class_names=trained.class_names, metrics=trained.metrics, summary=trained.summary,
                artifact_path=str(path),
            ))
            jobs.finish(session, job_id, jobs.SUCCEEDED, metrics=trained.metrics,
                        result={"model_id": model_id, "metrics": trained.metrics})
        job_log.info("job %s succeeded; model %s", job_id, model_id)
        return jobs.SUCCEEDED

    def _finish(self, job_id: str, status: str, **fields: Any) -> str:
        with self.db.session() as session:
            jobs.finish(session, job_id, status, **fields)
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


def _uploaded_path(session, dataset: Any) -> str | None:
    if isinstance(dataset, dict):
        row = session.get(Dataset, dataset["id"])
        return row.path if row else None
    return None
