"""Which queue a job goes to, from the device its spec asks for: one rule for every family."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.lab.worker_registry import gpu_worker_online


def queue_for(session: Session, device: str) -> str:
    """The GPU queue for a job that asks for a GPU, or says "auto" while a GPU worker is online;
    else the CPU queue."""
    return "gpu" if device == "gpu" or (device == "auto" and gpu_worker_online(session)) else "cpu"
