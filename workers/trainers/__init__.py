"""Trainers: plain functions `train(spec, data, report) -> TrainedModel` (or an OptimizationResult
where the job makes no model), free of database and Celery."""
from workers.trainers.base import Cancelled, OptimizationResult, Reporter, TrainedModel
from workers.trainers.registry import get_trainer, register

__all__ = ["Cancelled", "OptimizationResult", "Reporter", "TrainedModel", "get_trainer", "register"]
