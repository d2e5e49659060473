"""SLURM allocations that run several small jobs in turn (a SLURM queue's jobs_per_allocation)

Revision ID: 0014
Revises: 0013
Create Date: 2027-01-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slurm_allocations",
        sa.Column("slurm_id", sa.String(length=64), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("shape", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("jobs_run", sa.Integer(), nullable=False),
        sa.Column("max_jobs", sa.Integer(), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("slurm_id"),
    )


def downgrade() -> None:
    op.drop_table("slurm_allocations")
