"""JSON views of jobs, models and data sets, as API.md shows them."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from flask import g
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session, object_session

from service.api.context import services
from service.core import queues
from service.core.orm import Course, Dataset, Job, JobEvent, Model, Source, User
from service.data.image_folders import IMAGE_FOLDER
from service.jobs import families
from service.jobs.lifecycle import QUEUED
from service.lab import removed_queues
from service.lab.fair_share import place_without_the_line, queue_order


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def queue_position(session: Session, job: Job) -> int | None:
    """1 for the next job its queue will start, as fair share orders it now; None for a queue no
    longer configured, which starts none (its `waiting` says so)."""
    if job.status != QUEUED or job.queue not in configured_queues():
        return None
    # The first job of a queue that a request shows (a submit's, a job's view) is placed by a count
    # where that can tell (place_without_the_line); a second (a listing) reads the queue's order,
    # once per queue and request.
    orders = g.setdefault("queue_orders", {})
    if job.queue not in orders:
        orders[job.queue] = None
        place = place_without_the_line(session, job)
        if place is not None:
            return place
    if orders[job.queue] is None:
        order = queue_order(session, job.queue, services().settings)
        orders[job.queue] = {job_id: index for index, job_id in enumerate(order, start=1)}
    return orders[job.queue].get(job.id)


def configured_queues() -> dict[str, queues.QueueConfig]:
    """The queues LABTRAIN_QUEUES configures, read once per request (it may name a file)."""
    if "configured_queues" not in g:
        g.configured_queues = queues.catalog(services().settings)
    return g.configured_queues


@cache
def _owner_name() -> Select:
    # Every job view asks it: built once.
    return select(User.name).where(User.id == bindparam("owner"))


def job_view(session: Session, job: Job, owner_name: str | None = None) -> dict[str, Any]:
    if owner_name is None:
        owner_name = session.scalar(_owner_name(), {"owner": job.owner_id})
    return {
        "id": job.id,
        "name": job.name,
        "owner": owner_name,
        "status": job.status,
        "family": job.family,
        "spec": job.spec,
        "queue": job.queue,
        "position": queue_position(session, job),
        # Why a queued job is not sent yet: its course budget (service/courses/budgets.py), or its
        # queue no longer configured (service/lab/removed_queues.py).
        "waiting": removed_queues.waiting(job, configured_queues()),
        "progress": job.progress or {},
        "metrics": job.metrics,
        "result": job.result,
        "error": {"code": job.error_code, "message": job.error} if job.error else None,
        "parent_id": job.parent_id,  # the search this job is a trial of
        "trial_number": job.trial_number,
        "attempt": job.attempt,
        "cancel_requested": job.cancel_requested,
        "tier": job.tier,
        "course": _course_name(session, job),
        "gpu_memory_mb": job.gpu_memory_mb,  # what it holds of a shared GPU (GPU jobs)
        "preemptions": job.preemptions,  # times it yielded its slot to a debug job
        "preempt_requested": job.preempt_requested,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def _course_name(session: Session, job: Job) -> str | None:
    course = session.get(Course, job.course_id) if job.course_id else None  # the identity map keeps it
    return course.name if course else None


def event_view(event: JobEvent) -> dict[str, Any]:
    return {"seq": event.seq, "time": iso(event.time), "type": event.type, "data": event.data}


def model_view(model: Model) -> dict[str, Any]:
    return {
        "id": model.id,
        "job_id": model.job_id,
        "framework": model.framework,
        "algorithm": model.algorithm,
        "task": model.task,
        "input": model.input,
        "classes": model.classes,
        "class_names": model.class_names,
        "metrics": model.metrics,
        "summary": model.summary,
        "parameters": (model.meta or {}).get("parameters"),
        "device": (model.meta or {}).get("device"),
        # A model from students' code: the format it is served in and the framework that trained it.
        "format": (model.meta or {}).get("format"),
        "trained_with": (model.meta or {}).get("trained_with"),
        "picture": families.picture_input(model),
        "created_at": iso(model.created_at),
    }


def dataset_view(dataset: Dataset) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": dataset.id,
        "name": dataset.name,
        "builtin": False,
        "kind": dataset.kind,
        "rows": dataset.rows,
    }
    if dataset.kind == "npz":
        view.update(
            shape=dataset.info["input_shape"],
            task=dataset.info["task"],
            classes=dataset.info["classes"],
            has_test=dataset.info["has_test"],
        )
    elif dataset.kind == IMAGE_FOLDER:
        info = dataset.info
        view.update(
            shape=info["input_shape"],
            task=info["task"],
            classes=info["classes"],
            class_counts=info["class_counts"],
            image_size=info["image_size"],
            sizes_vary=info["sizes_vary"],
            color=info["color"],
        )
    else:
        view.update(columns=dataset.info.get("columns", []), target=dataset.info.get("target"))
    view.update(size_bytes=dataset.size_bytes, created_at=iso(dataset.created_at))
    course = object_session(dataset).get(Course, dataset.course_id) if dataset.course_id else None
    view["course"] = course.name if course else None  # published to a course: read as {"course", "name"}
    return view


def source_view(source: Source) -> dict[str, Any]:
    return {
        "id": source.id,
        "name": source.name,
        "kind": source.kind,
        "files": source.files,
        "size": source.size_bytes,
        "created_at": iso(source.created_at),
    }
