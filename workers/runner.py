"""Running one job: claim it, load its data, train, save the model, record the outcome.

The database session is closed during training (a long job must not hold a
connection) and short sessions record each event.
"""
from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path
from typing import Any

from service import jobs, storage
from service.config import Settings
from service.db import Database
from service.tables import Dataset, Job, Model, new_id, utcnow
from workers.data import load_arrays, load_table
from workers.trainers import Cancelled, TrainedModel, get_trainer
from workers.trainers.network import remove_checkpoints

log = logging.getLogger("labtrain.worker")

MODEL_SUFFIX = {"sklearn": ".skops", "tensorflow": ".keras", "pytorch": ".pt"}
CANCEL_POLL_SECONDS = 0.5


class DbReporter:
    """Writes a trainer's events and progress to the job's rows; raises Cancelled once asked to stop.

    `stop_requested` is asked after every training batch, so it reads a flag that a
    background thread refreshes from the database twice a second.
    """

    def __init__(self, db: Database, job_id: str, job_log: logging.Logger, checkpoint_dir: Path | None):
        self.db, self.job_id, self.log, self.checkpoint_dir = db, job_id, job_log, checkpoint_dir
        self._stop = threading.Event()
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

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
            metrics = fields.pop("metrics", None)
            if metrics is not None:
                job.metrics = metrics
            job.progress = {**(job.progress or {}), **fields}
            job.heartbeat_at = utcnow()

    def stop_requested(self) -> bool:
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name=f"cancel-watch-{self.job_id}", daemon=True)
            self._watcher.start()
        return self._stop.is_set()

    def close(self) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def _watch(self) -> None:
        while not self._done.wait(CANCEL_POLL_SECONDS):
            try:
                with self.db.session() as session:
                    if jobs.cancel_requested(session, self.job_id):
                        self._stop.set()
                        return
            except Exception:  # a database hiccup must not kill the job; look again next time
                log.warning("could not read job %s's cancel flag", self.job_id, exc_info=True)

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
            uploaded = _uploaded_file(session, spec.get("dataset"))

        job_log, handler = self._open_job_log(job_id)
        checkpoints = storage.job_dir(self.settings, job_id) / "checkpoints" if family == "network" else None
        reporter = DbReporter(self.db, job_id, job_log, checkpoints)
        try:
            job_log.info("job %s started on %s", job_id, self.worker_name)
            data = self._load_data(family, spec, uploaded)
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
            reporter.close()
            if not spec.get("training", {}).get("keep_checkpoints"):
                remove_checkpoints(checkpoints)
            job_log.removeHandler(handler)
            handler.close()

    def _load_data(self, family: str, spec: dict[str, Any], uploaded: tuple[str, str] | None):
        if family == "network":
            return load_arrays(spec, uploaded, self.settings.data_dir)
        return load_table(spec["dataset"], uploaded[1] if uploaded else None)

    def _succeed(self, job_id: str, owner_id: str, trained: TrainedModel, job_log: logging.Logger) -> str:
        with self.db.session() as session:
            if jobs.cancel_requested(session, job_id):
                raise Cancelled()
        model_id = new_id()
        path = storage.model_path(self.settings, model_id, MODEL_SUFFIX[trained.framework])
        save_model(trained, path)
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
            jobs.finish(session, job_id, jobs.SUCCEEDED, metrics=trained.metrics, result=result)
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


def save_model(trained: TrainedModel, path: Path) -> None:
    """Each framework's own format, written under a temporary name and then renamed."""
    if trained.framework == "sklearn":
        storage.dump_sklearn(trained.artifact, path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if trained.framework == "tensorflow":
        trained.artifact.save(tmp)
    else:
        import torch

        torch.save(trained.artifact.state_dict(), tmp)
    tmp.replace(path)


def _uploaded_file(session, dataset: Any) -> tuple[str, str] | None:
    if isinstance(dataset, dict):
        row = session.get(Dataset, dataset["id"])
        return (row.kind, row.path) if row else None
    return None
