"""Alembic's `upgrade head` builds exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from service.core.migrate import VERSION_TABLE, alembic_config, upgrade
from service.core.orm import Base


def _differences(url: str) -> list:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
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
    assert tables == {
        "users",
        "jobs",
        "job_events",
        "datasets",
        "models",
        "workers",
        "dispatch_lock",
        "audit",
        "sources",
        "courses",
        "course_members",
        "course_grants",
        "competitions",
        "competition_submissions",
        "uploads",
        "tracking_experiments",
        "tracking_runs",
        "tracking_params",
        "tracking_tags",
        "tracking_metrics",
        "tracking_logged_models",
        "tracking_run_inputs",
        "slurm_allocations",
        "labtrain_version",
    }
    upgrade(url)  # running it again is harmless


@pytest.mark.parametrize("name", ["fresh.db"])
def test_upgrade_head_on_empty_sqlite_matches_the_models(tmp_path, name):
    url = f"sqlite:///{tmp_path / 'nested' / name}"
    upgrade(url)
    assert _differences(url) == []


def test_a_database_with_the_legacy_version_table_is_adopted(make_pg_database):
    """Before Optuna shared the database, our revision sat in `alembic_version`."""
    url = make_pg_database()
    upgrade(url, "0003")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE labtrain_version RENAME TO alembic_version"))
    upgrade(url)
    with engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert conn.execute(text("SELECT version_num FROM labtrain_version")).scalar() == head
        assert "alembic_version" not in inspect(conn).get_table_names()
        assert "parent_id" in {c["name"] for c in inspect(conn).get_columns("jobs")}
    engine.dispose()
    assert _differences(url) == []
