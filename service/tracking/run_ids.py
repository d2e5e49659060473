"""A job's MLflow run id, without MLflow: what a worker needs of tracking for every job (a
SLURM node starts a process per job, and MLflow's import would be most of its start)."""

from __future__ import annotations

JOB_RUN_SUFFIX = "0" * 10


def job_run_id(job_id: str) -> str:
    """The MLflow run id of a job: 32 lowercase hex digits, the job's 22 then a fixed tail."""
    return f"{job_id}{JOB_RUN_SUFFIX}"
