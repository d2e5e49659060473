"""Courses: courses, their members' roles, a job's course, and what a roster says of a user

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "courses",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("term_end", sa.Date(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False, server_default="1"),
        sa.Column("budget", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "course_members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("course_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["course_id"], ["courses.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("course_id", "user_id", "role", name="uq_course_members_course_user_role"),
    )
    op.create_index("ix_course_members_course_id", "course_members", ["course_id"])
    op.create_index("ix_course_members_user_id", "course_members", ["user_id"])
    # Plain ADD COLUMNs, as in 0007: a batch would copy the jobs table, which the rows that refer
    # to it forbid. SQLite takes a column's REFERENCES in ADD COLUMN, but no ADD CONSTRAINT.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE jobs ADD COLUMN course_id VARCHAR(32) REFERENCES courses (id)")
    else:
        op.add_column("jobs", sa.Column("course_id", sa.String(length=32), nullable=True))
        op.create_foreign_key("jobs_course_id_fkey", "jobs", "courses", ["course_id"], ["id"])
    op.create_index("ix_jobs_course_id", "jobs", ["course_id"])
    op.add_column("users", sa.Column("full_name", sa.String(length=255), nullable=True))
    op.add_column("users", sa.Column("email", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email")
        batch_op.drop_column("full_name")
    op.drop_index("ix_jobs_course_id", table_name="jobs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":
            batch_op.drop_constraint("jobs_course_id_fkey", type_="foreignkey")
        batch_op.drop_column("course_id")
    op.drop_table("course_members")
    op.drop_table("courses")
