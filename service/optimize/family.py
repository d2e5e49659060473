"""The optimisation family's record in the job-family registry."""

from __future__ import annotations

from service.jobs.families import Family, register
from service.optimize.spec import OptimizeRun, OptimizeSpec, catalog
from service.optimize.validate import validate_optimize

FAMILY = register(
    Family(
        name="optimize",
        key="optimize",
        summary="optimize",
        title="Optimisation",
        request_model=OptimizeSpec,
        run_model=OptimizeRun,
        validate=validate_optimize,
        catalog_key="optimize",
        catalog=catalog,
        kind=lambda spec: (spec.get("optimize") or {}).get("strategy", "unknown"),
        trainer="workers.trainers.optimize",
        makes_model=False,
        no_model="an optimisation job: its result holds the best point it found, and it makes no model",
        example={
            "optimize": {"strategy": "pso", "function": "rastrigin", "dimensions": 10, "evaluations": 5000, "seed": 1}
        },
    )
)
