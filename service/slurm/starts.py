"""SLURM's expected starts of the jobs labtrain submitted and SLURM holds PENDING: squeue's start
field (%S, what `squeue --start` prints) where SLURM's scheduler has planned one. The dispatcher
puts them on the partition's row of the worker registry at each poll, where queue_estimates
(service/lab) reads them for GET /api/v1/me, the CLI and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from service.slurm.commands import SlurmJob
from service.slurm.script import JOB_NAME_PREFIX


def pending_starts(known: Mapping[str, SlurmJob], partition: str) -> dict[str, dict[str, str]]:
    """labtrain job id -> {"slurm_id", "start" (ISO 8601, UTC)} for the partition's pending jobs
    whose start SLURM knows."""
    found = {}
    for job in known.values():
        start = parse_time(job.start) if job.state == "PENDING" and job.partition == partition else None
        if start is not None and job.name.startswith(JOB_NAME_PREFIX):
            found[job.name[len(JOB_NAME_PREFIX) :]] = {"slurm_id": job.id, "start": start.isoformat()}
    return found


def parse_time(text: str) -> datetime | None:
    """SLURM's time (2026-01-31T12:00:00, in the submit host's local time), or None for N/A,
    Unknown and the like."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment.astimezone(UTC)  # a naive time is taken as local, as SLURM prints it
