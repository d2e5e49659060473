"""MLflow tracking: experiments (Default "0" and labtrain-jobs "1" shared by all), runs that are
not jobs and what a job's run adds, their params, tags and metric points, logged models and
run inputs

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-10
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    experiments = op.create_table(
        "tracking_experiments",
        sa.Column("id", sa.Integer(), sa.Identity(start=2), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "name", name="uq_tracking_experiments_owner_name"),
    )
    op.create_index("ix_tracking_experiments_owner_id", "tracking_experiments", ["owner_id"])
    op.create_table(
        "tracking_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("created_by_job_id", sa.String(length=32), nullable=True),
        sa.Column("course_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["tracking_experiments.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by_job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id"),
    )
    op.create_index("ix_tracking_runs_experiment_id", "tracking_runs", ["experiment_id"])
    op.create_index("ix_tracking_runs_owner_id", "tracking_runs", ["owner_id"])
    op.create_index("ix_tracking_runs_created_by_job_id", "tracking_runs", ["created_by_job_id"])
    op.create_index("ix_tracking_runs_course_id", "tracking_runs", ["course_id"])
    for name in ("tracking_params", "tracking_tags"):
        op.create_table(
            name,
            sa.Column("run_id", sa.String(length=32), nullable=False),
            sa.Column("key", sa.String(length=250), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
            sa.ForeignKeyConstraint(["run_id"], ["tracking_runs.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("run_id", "key"),
        )
    op.create_table(
        "tracking_metrics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),  # NULL is NaN (SQLite cannot store NaN)
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["tracking_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tracking_metrics_run_key_step", "tracking_metrics", ["run_id", "key", "step"])
    op.create_table(
        "tracking_logged_models",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("model_type", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("lifecycle_stage", sa.String(length=16), nullable=False),
        sa.Column("output_step", sa.BigInteger(), nullable=True),
        sa.Column("params", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_updated_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["tracking_experiments.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["tracking_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tracking_logged_models_experiment_id", "tracking_logged_models", ["experiment_id"])
    op.create_index("ix_tracking_logged_models_owner_id", "tracking_logged_models", ["owner_id"])
    op.create_index("ix_tracking_logged_models_run_id", "tracking_logged_models", ["run_id"])
    op.create_table(
        "tracking_run_inputs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=600), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["tracking_runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "kind", "key", name="uq_tracking_run_inputs_run_kind_key"),
    )
    op.create_index("ix_tracking_run_inputs_run_id", "tracking_run_inputs", ["run_id"])
    now = datetime.now(UTC)
    shared = {"owner_id": None, "lifecycle_stage": "active", "tags": {}, "created_at": now, "updated_at": now}
    op.bulk_insert(experiments, [{"id": 0, "name": "Default", **shared}, {"id": 1, "name": "labtrain-jobs", **shared}])


def downgrade() -> None:
    for name in (
        "tracking_run_inputs",
        "tracking_logged_models",
        "tracking_metrics",
        "tracking_tags",
        "tracking_params",
        "tracking_runs",
        "tracking_experiments",
    ):
        op.drop_table(name)
