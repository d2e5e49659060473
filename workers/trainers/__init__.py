"""Trainers, one package per job family: `load_data(run, source)` and `train(run, data, report)`,
free of database and Celery (workers/trainers/base.py)."""

from workers.trainers.base import Cancelled, DataSource, JobFailed, JobResult, Preempted, Reporter, TrainedModel

__all__ = ["Cancelled", "DataSource", "JobFailed", "JobResult", "Preempted", "Reporter", "TrainedModel"]
