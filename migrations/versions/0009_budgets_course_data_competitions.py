"""Courses, second part: grants on budgets, why a job waits, course data sets, competitions
and their submissions, and when a closed course's files were pruned

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _add_course_reference(table: str) -> None:
    # Plain ADD COLUMN, as in 0008: SQLite takes REFERENCES there, but no ADD CONSTRAINT.
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {table} ADD COLUMN course_id VARCHAR(32) REFERENCES courses (id)")
    else:
        op.add_column(table, sa.Column("course_id", sa.String(length=32), nullable=True))
        op.create_foreign_key(f"{table}_course_id_fkey", table, "courses", ["course_id"], ["id"])
    op.create_index(f"ix_{table}_course_id", table, ["course_id"])


def upgrade() -> None:
    op.add_column("courses", sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("waiting", JSON, nullable=True))
    op.add_column("jobs", sa.Column("earlier_device_s", sa.Float(), nullable=False, server_default="0"))
    _add_course_reference("datasets")
    op.create_table(
        "course_grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("course_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("gpu_hours", sa.Float(), nullable=False),
        sa.Column("cpu_hours", sa.Float(), nullable=False),
        sa.Column("granted_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["granted_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_course_grants_course_id", "course_grants", ["course_id"])
    op.create_index("ix_course_grants_user_id", "course_grants", ["user_id"])
    op.create_table(
        "competitions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("course_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("train", JSON, nullable=True),
        sa.Column("test_dataset_id", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("public_fraction", sa.Float(), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=False),
        sa.Column("final_selections", sa.Integer(), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"]),
        sa.ForeignKeyConstraint(["test_dataset_id"], ["datasets.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("course_id", "name", name="uq_competitions_course_name"),
    )
    op.create_index("ix_competitions_course_id", "competitions", ["course_id"])
    op.create_table(
        "competition_submissions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("competition_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=True),
        sa.Column("predictions_path", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("public_score", sa.Float(), nullable=True),
        sa.Column("private_score", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("counts", sa.Boolean(), nullable=False),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["competition_id"], ["competitions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_competition_submissions_competition_id", "competition_submissions", ["competition_id"])
    op.create_index("ix_competition_submissions_user_id", "competition_submissions", ["user_id"])
    op.create_index("ix_competition_submissions_job_id", "competition_submissions", ["job_id"])
    op.create_index("ix_competition_submissions_created_at", "competition_submissions", ["created_at"])


def downgrade() -> None:
    op.drop_table("competition_submissions")
    op.drop_table("competitions")
    op.drop_table("course_grants")
    op.drop_index("ix_datasets_course_id", table_name="datasets")
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":
            batch_op.drop_constraint("datasets_course_id_fkey", type_="foreignkey")
        batch_op.drop_column("course_id")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("earlier_device_s")
        batch_op.drop_column("waiting")
    with op.batch_alter_table("courses", schema=None) as batch_op:
        batch_op.drop_column("pruned_at")
