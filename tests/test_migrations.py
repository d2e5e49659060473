"""Alembic's `upgrade head` builds exactly the schema the models describe."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.migrate import upgrade
from service.tables import Base


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_head_on_empty_postgres_matches_the_models(make_pg_database):
    url = make_pg_database()
    upgrade(url)
    assert _differences(url) == []
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert tables == {"users", "jobs", "job_events", "datasets", "models", "workers", "dispatch_lock", "audit",
                      "alembic_version"}
    upgrade(url)  # running it again is harmless


@pytest.mark.parametrize("name", ["fresh.db"])
def test_upgrade_head_on_empty_sqlite_matches_the_models(tmp_path, name):
    url = f"sqlite:///{tmp_path / 'nested' / name}"
    upgrade(url)
    assert _differences(url) == []
