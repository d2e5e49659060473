"""Applying Alembic migrations from code (`labtrain db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text

import migrations
from service.core.db import make_engine

VERSION_TABLE = "labtrain_version"
LEGACY_VERSION_TABLE = "alembic_version"
OUR_REVISIONS = ("0001", "0002", "0003")  # those a database may have recorded under the legacy name


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    _adopt_legacy_version_table(database_url)
    command.upgrade(alembic_config(database_url), revision)


def _adopt_legacy_version_table(database_url: str) -> None:
    """Databases made before Optuna shared them recorded our revision in `alembic_version`,
    the table Optuna's own migrations use: move it to ours and leave that name to Optuna."""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            tables = set(inspect(conn).get_table_names())
            if LEGACY_VERSION_TABLE not in tables or VERSION_TABLE in tables:
                return
            version = conn.execute(text(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}")).scalar()
            if version not in OUR_REVISIONS:
                return
            conn.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            conn.execute(text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": version})
            conn.execute(text(f"DROP TABLE {LEGACY_VERSION_TABLE}"))
    finally:
        engine.dispose()
