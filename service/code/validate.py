"""Checking a code job spec at submit time: the source is the user's, the entrypoint is in
it, the data set exists, the resources are within the user's limits, and a worker can make
a sandbox for it."""

from __future__ import annotations

import keyword
from pathlib import Path
from typing import Any

from service.code.spec import CodePlan, CodeRun, CodeSpec, ResourcePlan
from service.core.errors import NotFound, SpecError
from service.core.orm import Source, could_be_id
from service.data.arrays import IMAGE_BUILTINS
from service.data.tables import BUILTINS
from service.jobs.context import SubmitContext
from service.jobs.limits import effective_limits
from service.jobs.spec import ValidatedJob, parse_spec
from service.lab import worker_registry
from service.lab.devices import Placement, check_resources, place
from service.lab.gpu_requests import gpu_memory_for

RUNNABLE = (".py", ".ipynb")
NOTEBOOK = ".ipynb"


def validate_code(payload: dict[str, Any], ctx: SubmitContext) -> ValidatedJob:
    spec = parse_spec(CodeSpec, payload)
    source = _source(ctx, spec.code.source)
    entrypoint = _entrypoint(source, spec.code.entrypoint)
    if entrypoint.endswith(NOTEBOOK):
        _check_notebook(Path(source.path) / entrypoint, entrypoint)
    _check_parameters(entrypoint, spec.code.parameters, spec.code.args)
    dataset = _dataset(ctx, spec.dataset)
    placement = place(ctx, spec.device, spec.queue)
    resources = _resources(ctx, spec, placement)
    queue = placement.queue
    _check_sandbox(ctx, queue)
    run = CodeRun(
        name=spec.name,
        dataset=dataset,
        code=CodePlan(source=source.id, entrypoint=entrypoint, args=spec.code.args, parameters=spec.code.parameters),
        resources=resources,
        device=placement.device,
        device_requested=spec.device,
    )
    gpu_memory = gpu_memory_for(
        ctx.session, placement.device, spec.resources.gpu_memory_mb, ctx.settings.gpu_memory_code_mb, queue=spec.queue
    )
    return ValidatedJob(
        family="code",
        run=run,
        queue=queue,
        name=spec.name,
        time_limit_s=spec.resources.time_limit_s,  # what it asked: a debug job's default is shorter
        gpu_memory_mb=gpu_memory,
        tier=spec.tier,
    )


def _source(ctx: SubmitContext, source_id: str) -> Source:
    row = ctx.session.get(Source, source_id) if could_be_id(source_id) else None
    if row is None or (row.owner_id != ctx.user.id and not ctx.user.is_admin):
        raise NotFound(
            f"no source with id {source_id!r}; upload your code with POST /api/v1/sources", field="code.source"
        )
    return row


def _entrypoint(source: Source, asked: str | None) -> str:
    paths = [f["path"] for f in source.files]
    if asked is None:
        runnable = [p for p in paths if p.endswith(RUNNABLE)]
        if len(runnable) == 1:
            return runnable[0]
        raise SpecError(
            f"name the file to run in code.entrypoint; the source holds {', '.join(runnable[:10])}",
            field="code.entrypoint",
        )
    if asked not in paths:
        raise SpecError(
            f"the source has no file {asked!r}; it holds {', '.join(paths[:10])}"
            + (" and more" if len(paths) > 10 else ""),
            field="code.entrypoint",
        )
    if not asked.endswith(RUNNABLE):
        raise SpecError(f"{asked!r} is neither a Python script (.py) nor a notebook (.ipynb)", field="code.entrypoint")
    return asked


def _check_notebook(path: Path, name: str) -> None:
    """A notebook Jupyter can read, so that a damaged file is a 422 now rather than a failed job."""
    import nbformat  # here: a worker loading the family registry (each SLURM job's process) never needs it

    try:
        nbformat.validate(nbformat.reads(path.read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT))
    except Exception as exc:  # JSON, encoding, schema: nbformat raises many types
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SpecError(
            f"{name!r} is not a notebook Jupyter can read ({reason}); save it again from Jupyter or Colab "
            "(File > Download > .ipynb)",
            field="code.entrypoint",
        ) from None


def _check_parameters(entrypoint: str, parameters: dict[str, Any], args: list[str]) -> None:
    if args and entrypoint.endswith(NOTEBOOK):
        raise SpecError(
            "a notebook takes no command-line arguments; give its values in code.parameters (set after its "
            'cell tagged `parameters`), e.g. {"epochs": 3}, or `labtrain run NOTEBOOK -p epochs=3`',
            field="code.args",
        )
    if parameters and not entrypoint.endswith(NOTEBOOK):
        raise SpecError(
            "parameters are a notebook's (set after its cell tagged `parameters`); give a script its values "
            'in code.args, e.g. ["--lr", "0.01"]',
            field="code.parameters",
        )
    for name in parameters:
        if not is_parameter_name(name):
            raise SpecError(
                f"{name!r} cannot be a notebook parameter: use a Python variable name (letters, digits, _)",
                field=f"code.parameters.{name}"[:200],
            )


def is_parameter_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and len(name) <= 100


def _dataset(ctx: SubmitContext, ref: Any) -> str | dict[str, Any] | None:
    if ref is None:
        return None
    if isinstance(ref, str):
        if ref in IMAGE_BUILTINS:
            ctx.data.arrays(ref)  # a 422 when mnist is not installed here
            return ref
        if ref in BUILTINS:
            return ref
        raise SpecError(
            f"unknown data set {ref!r}; use a built-in ({', '.join((*IMAGE_BUILTINS, *BUILTINS))}) "
            'or {"id": <uploaded data set id>} or {"course": <course>, "name": <its data set>}',
            field="dataset",
            code="unknown_dataset",
        )
    if not isinstance(ref, dict):
        raise SpecError(
            'dataset must be a built-in name, {"id": <uploaded data set id>} or {"course": ..., "name": ...}',
            field="dataset",
        )
    return ctx.data.reference(ref)  # an upload of the user's, or a course's they are in


def _resources(ctx: SubmitContext, spec: CodeSpec, placement: Placement) -> ResourcePlan:
    limits = effective_limits(ctx.settings, ctx.user)
    asked = spec.resources
    check_resources(placement, {name: getattr(asked, name) for name in ("cpus", "memory_mb", "time_limit_s")})
    bounds = {
        "memory_mb": (limits["max_memory_mb"], min(ctx.settings.code_memory_mb, limits["max_memory_mb"])),
        "cpus": (limits["max_cpus"], 1),
        "time_limit_s": (limits["max_run_time_s"], limits["max_run_time_s"]),
    }
    chosen = {}
    for name, (most, default) in bounds.items():
        value = getattr(asked, name)
        if value is not None and value > most:
            raise SpecError(
                f"resources.{name} may be at most {most} for you (ask an admin for more)",
                field=f"resources.{name}",
                details={"limit": most},
            )
        queue_most = getattr(placement.max, name)  # what the job did not ask for stays within its queue
        chosen[name] = value if value is not None else min(default, queue_most or default)
    return ResourcePlan(**chosen)


def _check_sandbox(ctx: SubmitContext, queue: str) -> None:
    """Refuse code jobs at once where every online worker of the queue said it cannot sandbox them."""
    if ctx.settings.code_sandbox != "required":
        return
    workers = [w for w in worker_registry.online(ctx.session) if queue in w.queues.split(",")]
    capable = [w for w in workers if (w.capabilities or {}).get("sandbox")]
    if workers and not capable:
        reason = (workers[0].capabilities or {}).get("sandbox_error", "it did not say why")
        raise SpecError(
            f"no {queue} worker here can run code in a sandbox ({reason}); an admin must install "
            'bubblewrap and give the workers cgroups (README, "Code jobs")',
            field="code",
            code="sandbox_unavailable",
        )
