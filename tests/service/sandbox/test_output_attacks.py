"""Attacks on what a job writes, each a real job on a real worker (tests/service/sandbox/
attack.py): disk held by a file deleted but kept open, a flood of empty files, a flood of
events down the events pipe, and a folder of outputs/ swapped for a link to the host while
the worker walks it. Each is bounded, and the next job on the worker succeeds."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from service.core import storage
from service.core.db import Database
from service.core.orm import JobEvent
from service.sandbox import disk
from service.sandbox.box import MAX_EVENT_ROWS, MAX_OUTPUT_BYTES
from tests.support.labs import AttackLab, LabSetup
from workers.trainers import code as code_trainer

MB = 1024 * 1024
DISK_MB = 64
MAX_FILES = 2000


LAB = LabSetup(
    "output-attacks",
    user="mallory",
    workers=(["--queues", "cpu", "--concurrency", "1"],),
    env={
        "LABTRAIN_MAX_JOB_DISK_MB": str(DISK_MB),
        "LABTRAIN_CODE_MAX_FILES": str(MAX_FILES),
        "LABTRAIN_STOP_GRACE_S": "4",
        "LABTRAIN_CODE_MEMORY_MB": "400",
    },
    kind=AttackLab,
)


def own_disk() -> bool:
    """Whether the worker (on this machine) gives each job a filesystem of its own."""
    return disk.unavailable() is None


def artifacts(lab: AttackLab, job: dict) -> list[dict]:
    return lab.client.get(f"/api/v1/jobs/{job['id']}/artifacts").json()["items"]


def test_a_file_deleted_but_kept_open_cannot_hold_more_than_the_limit(lab):
    if not own_disk():
        pytest.skip("this worker walks the job's folder: a file deleted but kept open escapes it")
    within = lab.job("hold_deleted", "16")  # the control: holding within the limit works, and is seen
    assert within["status"] == "succeeded", within["error"]
    assert lab.result(within)["held_mb"] == 16 and within["metrics"]["held_mb"] == 16

    job = lab.job("hold_deleted", "240")
    assert job["status"] == "failed" and job["error"]["code"] == "disk_limit_exceeded", job
    assert f"{DISK_MB} MB" in job["error"]["message"]
    # The disk was full while no file could be seen: the deleted file held it, and the kernel
    # stopped it at the limit (its last reports may still be in the pipe when it is killed).
    held = job["metrics"]["held_mb"]
    assert 0 < held <= DISK_MB, held
    lab.next_job_succeeds()


def test_a_flood_of_empty_files_stops_at_the_files_limit(lab):
    if not own_disk():
        pytest.skip("this worker walks the job's folder")
    began = time.monotonic()
    job = lab.job("many_files", "100000")
    assert job["status"] == "failed" and job["error"]["code"] == "files_limit_exceeded", job
    assert str(MAX_FILES) in job["error"]["message"] and "LABTRAIN_CODE_MAX_FILES" in job["error"]["message"]
    listed = artifacts(lab, job)
    assert MAX_FILES / 2 < len(listed) <= MAX_FILES + 64, len(listed)  # it made many; no more than the inodes
    assert time.monotonic() - began < 60
    lab.next_job_succeeds()


def test_a_flood_of_events_is_capped_in_rows_and_bytes(lab):
    sent = 150_000
    job = lab.job("event_flood", str(sent), "25", timeout=240)
    assert job["status"] == "succeeded", job["error"]
    assert lab.result(job)["sent"] == sent  # the control: it sent them all
    with Database(lab.env["LABTRAIN_DATABASE_URL"]).session() as session:
        rows = session.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id == job["id"]))
        messages = session.scalars(
            select(JobEvent.data["message"].as_string()).where(JobEvent.job_id == job["id"], JobEvent.type == "log")
        ).all()
    cells = [m for m in messages if m and m.startswith("cell ")]
    assert 1000 < len(cells) <= MAX_EVENT_ROWS, len(cells)  # a few arrived, and no more than the cap
    assert rows <= MAX_EVENT_ROWS + 20, rows  # besides the cells: status changes and the notices
    told_rows = [m for m in messages if m and f"more than {MAX_EVENT_ROWS} epoch reports" in m]
    told_bytes = [m for m in messages if m and "MB to its log" in m]
    assert len(told_rows) == 1 and len(told_bytes) == 1, (told_rows, told_bytes)  # told once each
    log = lab.home / "artifacts" / "jobs" / job["id"] / "job.log"
    assert log.stat().st_size < MAX_OUTPUT_BYTES * 1.1, log.stat().st_size  # stdout and events together
    lab.next_job_succeeds()


def test_a_folder_swapped_for_a_link_leads_the_harvest_nowhere(lab):
    job = lab.job("swap_links", "/usr/lib", "3")
    assert job["status"] == "succeeded", job["error"]
    assert lab.result(job)["swaps"] > 100  # the control: the links were really made, again and again
    listed = {item["path"] for item in artifacts(lab, job)}
    assert listed <= {"result.json", "link/own.txt", "d/own.txt"}, sorted(listed)[:20]
    lab.next_job_succeeds()


SWAPPER = """
import ctypes, os, sys, time
outputs, target = sys.argv[1], sys.argv[2]
os.symlink(target, f"{outputs}/link")
exchange = ctypes.CDLL(None, use_errno=True).renameat2  # RENAME_EXCHANGE: d is a folder, then a link, ...
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    exchange(-100, f"{outputs}/d".encode(), -100, f"{outputs}/link".encode(), 2)
"""


def test_the_workers_walks_never_follow_a_link_swapped_in(tmp_path):
    """The walks a worker does without a filesystem per job (and the harvest everywhere), raced
    by a process that swaps a folder for a link to a host folder the whole time."""
    host = tmp_path / "host"  # stands for the host's files (chown would spoil real ones)
    host.mkdir()
    for number in range(300):
        (host / f"secret{number}").write_bytes(b"s" * 1000)
    before = {path.name: path.stat() for path in host.iterdir()}
    workdir, checkpoints = tmp_path / "sandbox", tmp_path / "checkpoints"
    (workdir / "outputs" / "d").mkdir(parents=True)
    (workdir / "outputs" / "d" / "own.txt").write_text("mine")
    checkpoints.mkdir()
    swapper = subprocess.Popen([sys.executable, "-c", SWAPPER, str(workdir / "outputs"), str(host), "30"])
    try:
        walked = disk.FolderDisk(workdir, checkpoints, 10 * MB, 100)
        for round_ in range(3000):  # a walk without descriptors goes astray about once in a thousand
            found = storage.regular_files(workdir / "outputs")
            assert not [path for path, _ in found if "secret" in path], found
            assert walked.full() is None  # 300 host files would pass both limits
            if os.geteuid() == 0 and round_ % 10 == 0:
                code_trainer._chown_tree(workdir, 65534 + round_ % 20 // 10)
            if round_ % 300 == 0:
                into = tmp_path / f"harvest{round_}"
                harvested = code_trainer._harvest(workdir / "outputs", into)
                assert not [path for path, _ in harvested if "secret" in path], harvested
        assert swapper.poll() is None  # it swapped the whole time
    finally:
        swapper.kill()
        swapper.wait()
    after = {path.name: path.stat() for path in host.iterdir()}
    assert after.keys() == before.keys()  # nothing moved out
    assert all((after[n].st_uid, after[n].st_size) == (before[n].st_uid, before[n].st_size) for n in before)
