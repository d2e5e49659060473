"""A SLURM queue through slurmrestd (LABTRAIN_SLURMRESTD) instead of the commands, on the tests'
cluster and a real slurmrestd (tests/support/slurmrestd.py): JWT over TCP, and rest_auth/local on
its unix socket."""

from __future__ import annotations

import dataclasses
import json
import logging

from service.core import storage
from service.core.orm import Job, User, Worker
from service.jobs import lifecycle
from service.slurm.rest import SlurmRest
from tests.support.slurm_cluster import CPU_PARTITION, NODE
from tests.support.slurm_rounds import job_row, rounds_until, slurm_dispatcher, status_is

IRIS = {"dataset": "iris", "algorithm": "knn", "device": "cpu"}


def rest_dispatcher(settings, rest: dict, **queue):
    dispatcher = slurm_dispatcher(dataclasses.replace(settings, slurmrestd=json.dumps(rest)), **queue)
    assert isinstance(dispatcher.slurm.slurm, SlurmRest)  # not the commands
    return dispatcher


def test_a_classic_job_through_slurmrestd_runs_on_the_node(db, settings, submit, slurm_cluster, slurmrestd, caplog):
    caplog.set_level(logging.DEBUG)
    dispatcher = rest_dispatcher(settings, slurmrestd.jwt_config())
    job_id = submit(IRIS)
    with db.session() as session:
        assert dispatcher.run_round(session) == [job_id]
    slurm_id = job_row(db, job_id).backend_id
    shown = slurm_cluster.job(slurm_id)
    assert shown["JobName"] == f"labtrain-{job_id}" and shown["Partition"] == CPU_PARTITION
    assert shown["TimeLimit"] == "1-00:02:00" and shown["Requeue"] == "0"  # --time and --no-requeue, as sbatch's
    assert shown["StdOut"] == str(storage.job_dir(settings, job_id) / f"slurm-{slurm_id}.out")
    rounds_until(db, dispatcher, status_is(db, job_id, "succeeded", "failed"))
    job = job_row(db, job_id)
    assert job.status == "succeeded", job.error  # the node's runner had the database's URL
    assert job.worker == f"slurm:{CPU_PARTITION}@{NODE}" and job.result["model_id"]
    rounds_until(db, dispatcher, lambda: job_row(db, job_id).backend_id is None)  # its end seen through slurmrestd
    assert slurm_cluster.job(slurm_id)["JobState"] == "COMPLETED"
    with db.session() as session:  # the partition and its node, as slurmrestd lists them
        worker = session.get(Worker, f"slurm:{CPU_PARTITION}")
        assert worker.host == NODE and worker.capabilities["nodes"][0]["cpus"] == slurm_cluster.cpus
    # The environment went in the request's body: not in the script SLURM keeps, nor in a log; the
    # token only in its header.
    kept = slurm_cluster.run("scontrol", "write", "batch_script", slurm_id, "-").stdout
    assert "worker run-one" in kept and settings.database_url not in kept
    token = slurmrestd.token_file.read_text().removeprefix("SLURM_JWT=")
    for text in (caplog.text, slurmrestd.logs()):
        assert settings.database_url not in text and token not in text


def test_a_cancelled_job_goes_from_squeue_through_slurmrestds_socket(db, settings, submit, slurm_cluster, slurmrestd):
    dispatcher = rest_dispatcher(settings, slurmrestd.socket_config(), depth=1)
    slurm_cluster.run("scontrol", "update", f"partitionname={CPU_PARTITION}", "state=down")  # nothing starts
    try:
        job_id = submit(IRIS)
        with db.session() as session:
            assert dispatcher.run_round(session) == [job_id]
        slurm_id = job_row(db, job_id).backend_id
        assert slurm_cluster.squeue()[slurm_id] == "PENDING"
        with db.session() as session:
            job = session.get(Job, job_id)
            assert lifecycle.request_cancel(session, job, session.get(User, job.owner_id)) == "cancelled"
        rounds_until(db, dispatcher, lambda: slurm_id not in slurm_cluster.squeue(), timeout=10)
        assert slurm_cluster.job(slurm_id)["JobState"] == "CANCELLED"
    finally:
        slurm_cluster.run("scontrol", "update", f"partitionname={CPU_PARTITION}", "state=up")


def test_a_refused_token_says_slurmrestds_answer_and_the_job_stays_queued(
    db, settings, submit, slurmrestd, tmp_path, caplog
):
    wrong = tmp_path / "wrong.jwt"
    wrong.write_text("eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJyb290In0.c2lnbmVkIGJ5IGFub3RoZXIga2V5")
    dispatcher = rest_dispatcher(settings, {**slurmrestd.jwt_config(), "token_file": str(wrong)})
    job_id = submit(IRIS)
    with caplog.at_level(logging.WARNING, logger="labtrain.slurm"), db.session() as session:
        assert dispatcher.run_round(session) == []
    job = job_row(db, job_id)
    assert job.status == "queued" and job.backend_id is None and job.released_at is None  # tried again later
    assert (
        f"SLURM did not take job {job_id}; it stays queued: slurmrestd answered POST /slurm/v0.0.38/job/submit with HTTP 500"
        in caplog.text
    )
    assert (
        "could not ask SLURM about its jobs: slurmrestd answered GET /slurm/v0.0.38/jobs with HTTP 500" in caplog.text
    )
    assert wrong.read_text() not in caplog.text
