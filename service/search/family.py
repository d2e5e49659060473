"""The search family's record in the job-family registry."""

from __future__ import annotations

from service.jobs.families import Family, register
from service.search.spec import SearchDef, SearchRun, catalog
from service.search.validate import validate_search

SEARCH = "search"  # service.search.driver.SEARCH


def _driver(settings, db, name):
    """The dispatcher's search driver. Imported here, not above: Optuna is the dispatcher's alone,
    and every worker loads the family registry (a SLURM job's process, once per job)."""
    from service.search.driver import SearchDriver

    return SearchDriver(settings, db, name)


FAMILY = register(
    Family(
        name=SEARCH,
        key="search",
        summary="search",
        title="Hyperparameter search",
        request_model=SearchDef,
        run_model=SearchRun,
        validate=validate_search,
        catalog_key="search",
        catalog=catalog,
        kind=lambda spec: SEARCH,
        takes_slot=False,  # its trials are jobs of their own, and they hold the slots
        wraps=True,
        driver=_driver,
        example={
            "dataset": "wine",
            "algorithm": "svm",
            "params": {"kernel": "rbf"},
            "search": {
                "strategy": "tpe",
                "trials": 20,
                "metric": "accuracy",
                "parallel": 2,
                "space": {
                    "C": {"type": "float", "low": 0.01, "high": 100, "log": True},
                    "kernel": {"type": "categorical", "choices": ["linear", "rbf"]},
                },
            },
        },
    )
)
