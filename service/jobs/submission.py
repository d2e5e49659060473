"""The one path by which a job comes into being: its spec validated for its owner (the data
sets it names resolved as that user may see them), the user's limits applied, its row
written. The API submits this way, and so does the search driver for each trial.
"""

from __future__ import annotations

from typing import Any

from service.core import queues
from service.core.orm import Course, Job
from service.jobs import families, lifecycle, tiers
from service.jobs.context import SubmitContext
from service.jobs.keep_model import KEEP_MODEL
from service.jobs.limits import check_can_queue, effective_limits
from service.jobs.spec import ValidatedJob


def validate(ctx: SubmitContext, payload: Any) -> ValidatedJob:
    """The spec checked and completed by its family, or a 4xx naming the field."""
    family = families.chosen_by(payload)
    wrapper = families.wrapper_in(payload)
    return (wrapper or family).validate(payload, ctx)


def submit(
    ctx: SubmitContext,
    payload: Any,
    *,
    course: Course | None = None,
    trial_of: Job | None = None,
    trial_number: int | None = None,
    keep_model: dict[str, Any] | None = None,
) -> Job:
    """Validate, apply the limits and write the queued job, for `course` (the API resolved it:
    service/courses/job_course.py). A search's trial (`trial_of` its search) is not held to the
    queued-jobs limit, the search itself was, and is in its search's course; `keep_model` is
    when it keeps its model (service/jobs/keep_model.py), stored with its spec."""
    validated = validate(ctx, payload)
    if trial_of is None:
        check_can_queue(ctx.session, ctx.settings, ctx.user)
    limit = effective_limits(ctx.settings, ctx.user)["max_run_time_s"]
    queue = queues.catalog(ctx.settings).get(validated.queue)
    if queue is not None and queue.max.time_limit_s:  # a job that asked for more was refused (lab/devices.py)
        limit = min(limit, queue.max.time_limit_s)
    tier = validated.tier
    job = lifecycle.create_job(
        ctx.session,
        ctx.user,
        family=validated.family,
        spec=validated.spec if keep_model is None else {**validated.spec, KEEP_MODEL: keep_model},
        queue=validated.queue,
        name=validated.name,
        time_limit_s=tiers.time_limit(tier, validated.time_limit_s, limit, ctx.settings),
        max_attempts=ctx.settings.max_attempts,
        tier=tier,
        gpu_memory_mb=validated.gpu_memory_mb,
        course_id=trial_of.course_id if trial_of is not None else (course.id if course else None),
        **(
            {"parent_id": trial_of.id, "trial_number": trial_number, "priority": trial_of.priority}
            if trial_of is not None
            else {}
        ),
    )
    return job
