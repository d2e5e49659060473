"""SLURM's planned starts of labtrain's pending jobs, read from squeue's fields (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.slurm.commands import SlurmJob
from service.slurm.starts import parse_time, pending_starts

pytestmark = pytest.mark.fast


def job(slurm_id: str, name: str, state: str, start: str, partition: str = "batch") -> SlurmJob:
    return SlurmJob(slurm_id, name, state, "Resources", partition, "", start)


def test_only_labtrains_pending_jobs_in_the_partition_with_a_known_start_count():
    known = {
        j.id: j
        for j in (
            job("11", "labtrain-a1", "PENDING", "2031-01-02T03:04:05"),
            job("12", "labtrain-a2", "PENDING", "N/A"),  # no plan yet
            job("13", "labtrain-a3", "RUNNING", "2031-01-02T03:00:00"),  # started: its start is past
            job("14", "someone-else", "PENDING", "2031-01-02T03:04:05"),
            job("15", "labtrain-a5", "PENDING", "2031-01-02T03:04:05", partition="other"),
        )
    }
    found = pending_starts(known, "batch")
    assert list(found) == ["a1"] and found["a1"]["slurm_id"] == "11"
    assert datetime.fromisoformat(found["a1"]["start"]) == parse_time("2031-01-02T03:04:05")


def test_slurms_local_times_become_utc_and_its_words_none():
    local = datetime(2031, 1, 2, 3, 4, 5).astimezone()  # the submit host's zone, as SLURM prints
    assert parse_time("2031-01-02T03:04:05") == local.astimezone(UTC)
    for text in ("N/A", "Unknown", "", "None"):
        assert parse_time(text) is None
