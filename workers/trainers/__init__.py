"""Trainers: plain functions `train(spec, data, report) -> TrainedModel`, free of database and Celery."""
from workers.trainers.base import Cancelled, Reporter, TrainedModel
from workers.trainers.registry import get_trainer, register

__all__ = ["Cancelled", "Reporter", "TrainedModel", "get_trainer", "register"]
