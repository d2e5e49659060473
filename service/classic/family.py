"""The classic family's record in the job-family registry."""

from __future__ import annotations

from service.classic import search
from service.classic.algorithms import catalog
from service.classic.predict import SklearnPredictor
from service.classic.spec import ClassicRun, ClassicSpec
from service.classic.validate import validate_classic
from service.jobs.families import Family, register

FAMILY = register(
    Family(
        name="classic",
        key="algorithm",
        summary="algorithm (classic ML)",
        title="Classic machine learning",
        request_model=ClassicSpec,
        run_model=ClassicRun,
        validate=validate_classic,
        catalog_key="algorithms",
        catalog=catalog,
        kind=lambda spec: spec.get("algorithm", "unknown"),
        trainer="workers.trainers.classic",
        predictors={"sklearn": SklearnPredictor()},
        search=search.HOOKS,
        example={
            "name": "iris-knn",
            "dataset": "iris",
            "algorithm": "knn",
            "params": {"n_neighbors": 5},
            "evaluation": {"test_size": 0.2, "cv": 5, "seed": 0},
        },
    )
)
