"""What the dispatcher calls for the queues a SLURM partition serves.

- free_slots: a queue's configured depth minus the jobs labtrain submitted there that SLURM has
  not started (SLURM holds only what it can start soon; the dispatcher keeps the order), plus
  its allocations waiting for a next job (service/slurm/allocations.py).
- submit: the job chosen next by fair share goes to a waiting allocation of its shape, else in
  with sbatch; its SLURM id is the job's backend_id until labtrain has seen that SLURM job end
  or the job's own end.
- reconcile: each poll, squeue's view of labtrain's SLURM jobs against the jobs' rows. A job
  SLURM ended without an outcome is a lost worker (back to the queue within its attempts, or
  failed with SLURM's reason; past its --time: failed, `time_limit_exceeded`); a SLURM job whose
  labtrain job ended, was cancelled or went back to the queue is scancelled; each partition
  and its nodes are one row of the worker registry. Jobs SLURM holds for a queue it no longer
  serves (removed from LABTRAIN_QUEUES, or now on Celery) are reconciled too, looked for in every
  partition: a running one as any; one not started is scancelled and waits in labtrain's queue
  (service/lab/removed_queues.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from service.core import storage
from service.core.config import Settings
from service.core.orm import Course, Job, utcnow
from service.jobs import lifecycle
from service.jobs.lifecycle import FINISHED, QUEUED, RUNNING
from service.lab import queue_estimates, worker_registry
from service.slurm import allocations, rest, script, starts
from service.slurm.commands import Slurm, SlurmError, SlurmJob
from service.slurm.queues import SlurmQueue

log = logging.getLogger("labtrain.slurm")

# SLURM ended the job before labtrain's runner claimed it, in a way a new submission will not mend.
START_FAILED_STATES = frozenset({"FAILED", "COMPLETED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"})


class SlurmBackend:
    def __init__(
        self, settings: Settings, queues: Mapping[str, SlurmQueue], slurm: Slurm | rest.SlurmRest | None = None
    ):
        self.settings, self.queues = settings, dict(queues)
        # No queue: only the jobs removed queues left in SLURM, followed with a queue's defaults.
        defaults = list(self.queues.values()) or [SlurmQueue(queue="", partition="")]
        # SLURM's commands, or slurmrestd where LABTRAIN_SLURMRESTD names it (a mistake there stops the start).
        self.slurm = slurm or rest.client(settings, timeout_s=max(q.command_timeout_s for q in defaults))
        self.poll_s = min(q.poll_s for q in defaults)
        self._next_poll = 0.0

    def serves(self, queue: str) -> bool:
        return queue in self.queues

    def due(self) -> bool:
        """Whether a round should reconcile now even if nothing else asks for one."""
        return time.monotonic() >= self._next_poll

    def check_partitions(self) -> None:
        """At the dispatcher's start: each queue's partition is one SLURM has (a ValueError naming
        the queue and the partition). SLURM out of reach is no mistake of the map: said, not fatal."""
        try:
            present = self.slurm.partitions()
        except SlurmError as exc:
            log.warning("could not ask SLURM for its partitions; not checked: %s", exc)
            return
        for queue in self.queues.values():
            if queue.partition not in present:
                raise ValueError(
                    f"LABTRAIN_QUEUES.{queue.queue}.partition: SLURM has no partition {queue.partition!r} "
                    f"for queue {queue.queue} (its partitions: {', '.join(present) or 'none'})"
                )

    def free_slots(self, session: Session, queue: str) -> int:
        submitted = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.queue == queue, Job.status == QUEUED, Job.released_at.is_not(None))
        )
        waiting = allocations.idle_count(session, queue) if self.queues[queue].reuses_allocations else 0
        return self.queues[queue].depth - (submitted or 0) + waiting

    def submit(self, session: Session, job: Job) -> bool:
        """Hand the job to a waiting allocation of its shape, or sbatch it; False when SLURM did
        not take it (it stays queued, tried again later)."""
        queue = self.queues[job.queue]
        course_name = session.scalar(select(Course.name).where(Course.id == job.course_id)) if job.course_id else None
        options = script.sbatch_options(
            job_id=job.id,
            spec=job.spec,
            tier=job.tier,
            job_time_limit_s=job.time_limit_s,
            gpu_memory_mb=job.gpu_memory_mb,
            course_name=course_name,
            queue=queue,
            settings=self.settings,
        )
        if queue.reuses_allocations:
            shape = allocations.shape(options)
            needs = script.time_limit_s(job.time_limit_s, queue, self.settings)
            handed_to = allocations.hand_over(session, queue.queue, shape, needs, utcnow())
            if handed_to:
                job.backend_id = handed_to
                log.info("job %s handed to SLURM job %s, which ran the one before", job.id, handed_to)
                return True
        storage.job_dir(self.settings, job.id).mkdir(parents=True, exist_ok=True)  # SLURM writes its output there
        seconds = script.time_limit_s(job.time_limit_s, queue, self.settings, allocation=True)
        try:
            job.backend_id = self.slurm.sbatch(
                options, script.batch_script(queue, job.id, seconds), script.job_environment(self.settings, queue)
            )
        except SlurmError as exc:
            log.warning("SLURM did not take job %s; it stays queued: %s", job.id, exc)
            return False
        log.info("job %s submitted to SLURM partition %s as %s", job.id, queue.partition, job.backend_id)
        if queue.reuses_allocations:
            allocations.record(
                session, job.backend_id, queue.queue, shape, queue.jobs_per_allocation, queue.allocation_wait_s
            )
        return True

    def reconcile(self, session: Session, now: datetime) -> int:
        """Returns how many jobs SLURM may still hold (those whose end labtrain has not seen)."""
        self._next_poll = time.monotonic() + self.poll_s
        # A removed queue's partition is no longer known: its jobs are looked for in every partition.
        left = session.scalar(select(exists().where(Job.backend_id.is_not(None), Job.queue.not_in(list(self.queues)))))
        try:
            # SLURM first, the rows after: a runner that recorded its outcome committed it before it exited.
            partitions = None if left else [q.partition for q in self.queues.values()]
            known = self.slurm.jobs(partitions, script.JOB_NAME_PREFIX)
            self._register(session, known)
        except SlurmError as exc:
            log.warning("could not ask SLURM about its jobs: %s", exc)
            return 1  # not known: as if one were left
        ran = allocations.jobs_run(session)
        tracked = list(
            session.scalars(select(Job).where(Job.backend_id.is_not(None)).execution_options(populate_existing=True))
        )
        to_cancel = []
        for job in tracked:
            slurm_job = known.get(job.backend_id)
            if self._settle(session, job, slurm_job, now, ran) and slurm_job is not None and slurm_job.active:
                to_cancel.append(slurm_job.id)
        if ran:
            allocations.forget_ended(session, [i for i, j in known.items() if j.active and i not in to_cancel])
        if to_cancel:
            try:
                self.slurm.cancel(to_cancel)
                log.info("scancelled SLURM job(s) %s", ", ".join(to_cancel))
            except SlurmError as exc:
                log.warning("scancel failed (tried again next poll): %s", exc)
        return sum(job.backend_id is not None for job in tracked)

    def _settle(
        self, session: Session, job: Job, slurm_job: SlurmJob | None, now: datetime, ran: Mapping[str, int]
    ) -> bool:
        """Bring the job's row and its SLURM job together; True when the SLURM job must be cancelled.
        `ran`: the allocations (service/slurm/allocations.py) and the jobs each has run."""
        ended = slurm_job is None or not slurm_job.active
        if job.status in FINISHED:
            if ended:
                job.backend_id = None
                return False
            if job.backend_id in ran:  # the allocation goes on to its next job; only one never started goes
                job.backend_id = None
                return job.status == lifecycle.CANCELLED and not slurm_job.started
            # A cancelled job goes at once; one that recorded its own end is given time to exit.
            exiting = job.finished_at and (now - job.finished_at).total_seconds() < self.settings.stop_grace_s
            return job.status == lifecycle.CANCELLED or not exiting
        if job.status == QUEUED and job.released_at is None:  # back in the queue: this submission is spent
            if ended:
                job.backend_id = None
            return not ended
        if job.status == QUEUED:
            if not ended:
                return not self.serves(job.queue) and self._take_back(session, job, slurm_job, ran)
            self._not_started(session, job, slurm_job, handed=ran.get(job.backend_id, 0) > 0)
            return False
        if job.status == RUNNING:
            if not ended:
                return bool(job.cancel_requested)  # the runner records the cancel; SLURM frees the node
            self._ended_while_running(session, job, slurm_job)
        return False

    def _take_back(self, session: Session, job: Job, slurm_job: SlurmJob, ran: Mapping[str, int]) -> bool:
        """A job SLURM holds, not started, for a queue it no longer serves: back to labtrain's queue,
        where it waits for an admin (service/lab/removed_queues.py); True: scancel its SLURM job.
        One handed to an allocation that runs others, or started meanwhile, is left to run."""
        if slurm_job.started or job.backend_id in ran:
            return False
        job.released_at = None
        message = (
            f"queue {job.queue} is not a SLURM queue here any more: SLURM job {job.backend_id} is cancelled "
            "before it started, and the job waits in labtrain's queue"
        )
        lifecycle.add_event(session, job.id, "log", {"message": message})
        log.warning("job %s: %s", job.id, message)
        return True

    def _not_started(self, session: Session, job: Job, slurm_job: SlurmJob | None, handed: bool) -> None:
        """SLURM ended a job labtrain's runner never claimed (`handed`: an allocation that had run
        others ended before it took this one, which goes in again)."""
        state = slurm_job.state if slurm_job else "GONE"
        if state in START_FAILED_STATES and not handed:
            message = (
                f"SLURM job {job.backend_id} ended ({_describe(slurm_job)}) before labtrain's runner started on "
                f"its node; its output is slurm-{job.backend_id}.out in the job's folder"
            )
            failed = session.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == QUEUED, Job.backend_id == job.backend_id)
                .values(status=lifecycle.FAILED, error_code="slurm_start_failed", error=message, finished_at=utcnow())
            ).rowcount
            if failed:
                lifecycle.add_event(session, job.id, "status", {"status": lifecycle.FAILED, "error": message})
            log.warning("job %s: %s", job.id, message)
        else:  # cancelled by an admin, the node failed, preempted before it ran: submitted again
            log.warning("job %s: SLURM job %s ended unstarted (%s); submitting it again", job.id, job.backend_id, state)
            job.released_at = None
        job.backend_id = None

    def _ended_while_running(self, session: Session, job: Job, slurm_job: SlurmJob | None) -> None:
        """The runner is gone without an outcome: handled as a lost worker, with SLURM's reason."""
        slurm_id, state = job.backend_id, (slurm_job.state if slurm_job else "GONE")
        job.backend_id = None
        why = f"SLURM job {slurm_id} ended: {_describe(slurm_job)}"
        if job.cancel_requested:
            lifecycle.finish(session, job.id, lifecycle.CANCELLED, attempt=job.attempt)
        elif state == "TIMEOUT":
            queue = self.queues.get(job.queue)  # None: a queue since removed; its --time is not known now
            limit = script.time_limit_s(job.time_limit_s, queue, self.settings) if queue else None
            lifecycle.finish(
                session,
                job.id,
                lifecycle.FAILED,
                attempt=job.attempt,
                error_code="time_limit_exceeded",  # the code of a time limit on any backend
                error="SLURM stopped the job at its time limit ("
                + (f"--time={(limit or 0) // 60} min, " if queue else "")
                + f"SLURM job {slurm_id})",
            )
        else:
            lifecycle.requeue_or_fail_lost(session, job, why, f"{why}, in the last of its {job.attempt} attempts")

    def _register(self, session: Session, known: Mapping[str, SlurmJob]) -> None:
        """Each partition and its nodes as a worker row, so the registry and the dashboard show it,
        with SLURM's expected starts of its pending jobs (queue_estimates reads them)."""
        for queue in self.queues.values():
            nodes = self.slurm.nodes(queue.partition)
            up = [n for n in nodes if not n.state.rstrip("*~#!%$@^-").lower().startswith(("down", "drain", "fail"))]
            capabilities = {
                "backend": "slurm",
                "partition": queue.partition,
                "nodes": [{"name": n.name, "state": n.state, "cpus": n.cpus, "gres": n.gres} for n in nodes],
                queue_estimates.BACKEND_STARTS: starts.pending_starts(known, queue.partition),
            }
            if queue.sandbox:
                capabilities["sandbox"] = queue.sandbox
            else:
                capabilities["sandbox_error"] = f"LABTRAIN_QUEUES does not say that {queue.partition}'s nodes sandbox"
            worker_registry.heartbeat(
                session,
                name=queue.worker_name,
                queues=[queue.queue],
                host=",".join(n.name for n in nodes)[:255],
                pid=os.getpid(),
                concurrency=queue.depth if up else 0,
                gpu_name=f"SLURM gres {queue.gpu}" if queue.has_gpu else None,
                gpu_memory_mb=None,
                capabilities=capabilities,
            )


def _describe(slurm_job: SlurmJob | None) -> str:
    if slurm_job is None:
        return "SLURM no longer knows it"
    reason = f", {slurm_job.reason}" if slurm_job.reason and slurm_job.reason != "None" else ""
    nodes = f" on {slurm_job.nodes}" if slurm_job.nodes else ""
    return f"{slurm_job.state}{reason}{nodes}"
