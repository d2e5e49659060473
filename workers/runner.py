"""Running one job: claim it, read its typed run, load its data, train, save the model (if it
makes one), record the outcome.

The family's registry record says which trainer runs it and which model its stored spec
re-validates into. The database session is closed during training (a long job must not
hold a connection) and short sessions record each event.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from service.core import logs, storage
from service.core.config import Settings
from service.core.db import Database
from service.core.orm import Dataset, Job, Model, new_id
from service.jobs import families, keep_model, lifecycle
from service.serving.check import ModelRefused, check_model
from service.tracking.run_ids import job_run_id
from workers import batch_signal
from workers.reporter import DbReporter
from workers.trainers import Allotment, Cancelled, DataSource, JobFailed, JobResult, Preempted, TrainedModel
from workers.watch import CANCELLED, SUPERSEDED, JobWatch, outcome

log = logging.getLogger("labtrain.worker")
_NONE_TAKEN = object()  # what _run returns where its `take` gave no job


class JobRunner:
    def __init__(self, settings: Settings, db: Database, worker_name: str, refills: bool = False):
        """`refills`: this process fills the slot a job frees itself (workers/refill.py): its
        outcome's wake-up says so, and the dispatcher leaves that slot to it."""
        self.settings, self.db, self.worker_name = settings, db, worker_name
        self._refill_wake = {"refill": worker_name} if refills else None
        self.ended_wake = self._refill_wake  # the outcome's wake-up: the job's, set as it is taken

    def run(self, job_id: str) -> str | None:
        """Run the job if this delivery wins the claim; returns its final status (None: duplicate).
        The claim is one statement, which commits alone (service/core/db.py `each_statement_alone`):
        should this process fail before the job starts, its heartbeat's reaper puts it back."""
        return self._named_in_logs(lambda _session: job_id, self.db.each_statement_alone, taken=False)

    def run_taken(self, take: Callable[[Session], str | None]) -> bool:
        """Run the job `take` gives, taken in the transaction that claims it (a slot's refill,
        workers/refill.py: a commit less a job); False where it gave none."""
        return self._named_in_logs(take, self.db.session, taken=True) is not _NONE_TAKEN

    def _named_in_logs(self, take: Callable[[Session], str | None], sessions, taken: bool) -> Any:
        # A job this process took for its slot says so as it ends (`taken`): the next take follows
        # it under the round's lock and rings the dispatcher where it leaves the slot free
        # (workers/refill.py), so the dispatcher keeps what its last look knew (Dispatcher.settled_by).
        self.ended_wake = {**self._refill_wake, "taken": True} if taken and self._refill_wake else self._refill_wake
        token = logs.JOB_ID.set(None)  # _run names the job once it is taken
        try:
            return self._run(take, sessions, taken)
        finally:
            logs.JOB_ID.reset(token)

    def _run(
        self,
        take: Callable[[Session], str | None],
        sessions: Callable[[], AbstractContextManager[Session]],
        taken: bool,
    ) -> Any:
        with sessions() as session:
            job_id = take(session)
            if job_id is None:
                return _NONE_TAKEN
            logs.JOB_ID.set(job_id)
            claimed = lifecycle.claim_job(session, job_id, self.worker_name, released=taken)
            if claimed is None:
                log.info("job %s was already claimed or is not queued; dropping this delivery", job_id)
                return None
            attempt, family_name, time_limit = claimed.attempt, claimed.family, claimed.time_limit_s
            stored, keep = keep_model.split(claimed.spec)
            try:
                family = families.get(family_name)
                run = family.run_model.model_validate(stored)
            except (LookupError, ValidationError) as exc:
                return self._refuse(session, job_id, attempt, family_name, exc)
            uploaded = _uploaded_file(session, run.uploaded_dataset_id())

        job_log, handler = self._open_job_log(job_id)
        checkpoints = storage.job_dir(self.settings, job_id) / "checkpoints"
        watch = JobWatch(
            self.db, job_id, attempt, time_limit, self.settings.stop_grace_s, self.settings.job_heartbeat_timeout_s
        )
        watch.start()
        reporter = DbReporter(self.db, job_id, job_log, watch, progress=claimed.progress or {})
        allotted = allotment(reporter, checkpoints, self.settings.checkpoint_every_s, claimed.gpu_memory_mb)
        if self.settings.code_tracking:  # the job's own MLflow endpoint, for a trainer that runs students' code
            allotted.tracking_app = self._tracking_app(job_id)
            allotted.tracking_run_id = job_run_id(job_id)
        status: str | None = None
        try:
            job_log.info("job %s started on %s (attempt %d)", job_id, self.worker_name, attempt)
            trainer = importlib.import_module(family.trainer)
            source = DataSource(self.settings.data_dir, uploaded, self.settings, job_id, attempt)
            data = trainer.load_data(run, source)
            trained = trainer.train(run, data, reporter, allotted)
            if isinstance(trained, JobResult):
                status = self._succeed_with_result(job_id, attempt, trained, job_log, reporter)
            else:
                unkept = _why_not_kept(family, run, keep, trained.metrics)
                status = self._succeed(job_id, attempt, claimed.owner_id, trained, job_log, reporter, unkept)
        except Preempted:
            self._yield(job_id, attempt, reporter, job_log)
        except Cancelled:
            if watch.reason is None and allotted.yielded:
                self._yield(job_id, attempt, reporter, job_log)
                return None
            if watch.reason == SUPERSEDED:
                job_log.warning("job %s attempt %d was taken over by another attempt; stopping", job_id, attempt)
                return None
            job_log.info("job %s stopped: %s", job_id, watch.reason or CANCELLED)
            status, fields = outcome(watch.reason or CANCELLED, time_limit)
            self._finish(job_id, attempt, status, reporter, **fields)
        except JobFailed as failed:  # a failure the trainer could name
            job_log.error("job %s failed: %s", job_id, failed.message)
            status = self._finish(
                job_id, attempt, lifecycle.FAILED, reporter, error_code=failed.code, error=failed.message
            )
        except Exception as exc:  # the job fails; the worker goes on with the next one
            job_log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            message = f"{type(exc).__name__}: {exc}".strip()
            status = self._finish(
                job_id,
                attempt,
                lifecycle.FAILED,
                reporter,
                error_code="training_error",
                error=f"{message} (the job's log has the full traceback)",
            )
        finally:
            watch.close()
            # Checkpoints outlive a crash (the next attempt resumes from them), not the job's end.
            if status and not run.keeps_checkpoints:
                shutil.rmtree(checkpoints, ignore_errors=True)
            job_log.removeHandler(handler)
            handler.close()
        return status

    def _tracking_app(self, job_id: str):
        def make(on_metrics):
            # Imported when a code job serves it: MLflow's import is most of a job's start on a
            # SLURM node, where each job starts a process (`worker run-one`).
            from service.tracking.job_endpoint import job_app

            return job_app(self.db, self.settings, job_id, on_metrics)

        return make

    def _refuse(self, session, job_id: str, attempt: int, family_name: str, exc: Exception) -> str:
        """A job this worker cannot run at all (an unknown family, a stored spec its model refuses)."""
        log.error("job %s (%s) cannot run here: %s", job_id, family_name, exc)
        message = (
            str(exc)
            if isinstance(exc, LookupError)
            else f"the stored {family_name} spec does not validate: {str(exc).splitlines()[0]}"
        )
        lifecycle.finish(
            session,
            job_id,
            lifecycle.FAILED,
            attempt=attempt,
            wake=self.ended_wake,
            error_code="invalid_spec",
            error=message,
        )
        return lifecycle.FAILED

    # The outcome is one transaction: the model's row, the job's row (its status, result, and the
    # progress the reporter holds) and its events (the log lines that waited, then `succeeded`).
    def _succeed(
        self,
        job_id: str,
        attempt: int,
        owner_id: str,
        trained: TrainedModel,
        job_log: logging.Logger,
        reporter: DbReporter,
        unkept: str | None = None,
    ) -> str:
        """`unkept`: why the trial keeps no model (its search's keep_models), None to keep it."""
        watch = reporter.watch
        if watch.stop.is_set():
            raise Cancelled()
        model_id = None if unkept else new_id()
        if model_id:
            path = storage.model_path(self.settings, model_id, trained.suffix)
            with storage.atomic_path(path) as tmp:  # each framework's own format, renamed into place once written
                trained.write(trained.artifact, tmp)
                if trained.left_by_job:
                    self._check_model(trained, tmp)
        watch.finishing = True
        with self.db.session() as session:
            if model_id:
                session.add(
                    Model(
                        id=model_id,
                        job_id=job_id,
                        owner_id=owner_id,
                        framework=trained.framework,
                        algorithm=trained.algorithm,
                        task=trained.task,
                        input=trained.input,
                        classes=trained.classes,
                        class_names=trained.class_names,
                        metrics=trained.metrics,
                        summary=trained.summary,
                        meta=trained.extra or None,
                        artifact_path=str(path),
                    )
                )
            result = {**trained.result, "model_id": model_id, "metrics": trained.metrics}
            if unkept:
                result["model_not_kept"] = unkept
            if "device" in trained.extra:
                result["device"] = trained.extra["device"]
            events, values = reporter.take(session)
            finished = lifecycle.finish(
                session,
                job_id,
                lifecycle.SUCCEEDED,
                attempt=attempt,
                before=events,
                wake=self.ended_wake,
                **{**values, "metrics": trained.metrics, "result": result},
            )
            if not finished:
                raise RuntimeError("the job is no longer this attempt's to finish")  # rolls the model row back
        job_log.info("job %s succeeded; %s", job_id, f"model {model_id}" if model_id else f"no model kept: {unkept}")
        return lifecycle.SUCCEEDED

    def _check_model(self, trained: TrainedModel, path) -> None:
        """Load a model the job's code wrote in a model's process of its own, never here."""
        fields = {
            "id": "candidate",
            "framework": trained.framework,
            "task": trained.task,
            "input": trained.input,
            "meta": trained.extra,
            "classes": trained.classes,
            "class_names": trained.class_names,
        }
        try:
            check_model(self.settings, families.predictor(trained.framework), fields, path)
        except ModelRefused as exc:
            raise JobFailed(
                "model_export_failed",
                f"{exc}. Models are loaded only as data: an ONNX graph of standard operators, or "
                "scikit-learn's own estimators and transformers saved with save_model",
            ) from None

    def _succeed_with_result(
        self, job_id: str, attempt: int, found: JobResult, job_log: logging.Logger, reporter: DbReporter
    ) -> str:
        """A job whose outcome is its result (an optimisation): no model to save."""
        if reporter.watch.stop.is_set():
            raise Cancelled()
        reporter.watch.finishing = True
        with self.db.each_statement_alone() as session:  # lifecycle.finish: one statement
            events, values = reporter.take(session)
            fields = {**values, "metrics": found.metrics, "result": found.result}
            finished = lifecycle.finish(
                session, job_id, lifecycle.SUCCEEDED, attempt=attempt, before=events, wake=self.ended_wake, **fields
            )
            if not finished:
                raise RuntimeError("the job is no longer this attempt's to finish")
        job_log.info("job %s succeeded", job_id)
        return lifecycle.SUCCEEDED

    def _yield(self, job_id: str, attempt: int, reporter: DbReporter, job_log: logging.Logger) -> None:
        """Asked to yield its slot, the job stopped after a checkpoint: back to the queue, this
        attempt not counted, its checkpoints kept for the next."""
        with self.db.session() as session:
            cancelled = session.get(Job, job_id).cancel_requested
        if cancelled:  # cancelled as it yielded (SLURM signals the job a cancel scancels): a cancel
            self._finish(job_id, attempt, lifecycle.CANCELLED, reporter)
            return
        reporter.watch.finishing = True
        with self.db.session() as session:
            reporter.write_pending(session)
            requeued = lifecycle.requeue_preempted(session, job_id, attempt)
        job_log.info("job %s yielded its slot%s", job_id, "" if requeued else " (but was no longer this attempt's)")

    def _finish(self, job_id: str, attempt: int, status: str, reporter: DbReporter, **fields: Any) -> str:
        reporter.watch.finishing = True
        with self.db.each_statement_alone() as session:  # lifecycle.finish: one statement
            events, values = reporter.take(session)
            lifecycle.finish(
                session, job_id, status, attempt=attempt, before=events, wake=self.ended_wake, **{**values, **fields}
            )
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


def allotment(
    reporter: DbReporter, checkpoints: Path, checkpoint_every_s: float, gpu_memory_mb: int | None
) -> Allotment:
    """What this attempt runs with; its stop check also writes what the reporter holds, on time,
    while a trainer only polls (a code job's supervisor, a long notebook cell)."""
    watch = reporter.watch

    def stop() -> bool:
        reporter.write_if_due()
        return watch.stop.is_set()

    return Allotment(
        checkpoint_dir=checkpoints,
        gpu_memory_mb=gpu_memory_mb,
        checkpoint_every_s=checkpoint_every_s,
        stop=stop,
        preempt=lambda: watch.preempting or batch_signal.asked() == batch_signal.YIELD,
    )


def _why_not_kept(family: families.Family, run, keep: dict[str, Any] | None, metrics: dict[str, Any]) -> str | None:
    """Why a search's trial keeps no model (service/jobs/keep_model.py); None: it keeps it."""
    if keep is None or family.search is None:
        return None
    return keep_model.not_kept(keep, family.search.score(run, metrics, keep["metric"]))


def _uploaded_file(session, dataset_id: str | None) -> tuple[str, str] | None:
    row = session.get(Dataset, dataset_id) if dataset_id else None
    return (row.kind, row.path) if row else None
