"""The search family's record in the job-family registry."""

from __future__ import annotations

from service.jobs.families import Family, register
from service.search.driver import SEARCH, SearchDriver
from service.search.spec import SearchDef, SearchRun, catalog
from service.search.validate import validate_search

FAMILY = register(
    Family(
        name=SEARCH,
        key="search",
        summary="search",
        request_model=SearchDef,
        run_model=SearchRun,
        validate=validate_search,
        catalog_key="search",
        catalog=catalog,
        kind=lambda spec: SEARCH,
        takes_slot=False,  # its trials are jobs of their own, and they hold the slots
        wraps=True,
        driver=SearchDriver,
    )
)
