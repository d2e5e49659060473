"""Trainers, one package per job family: `load_data(run, source)` and
`train(run, data, report, allotted)`, free of database and Celery (workers/trainers/base.py)."""

from workers.trainers.base import (
    Allotment,
    Cancelled,
    DataSource,
    JobFailed,
    JobResult,
    Preempted,
    Reporter,
    TrainedModel,
)

__all__ = ["Allotment", "Cancelled", "DataSource", "JobFailed", "JobResult", "Preempted", "Reporter", "TrainedModel"]
