"""GPU sharing, tiers and preemption: what a job holds of a GPU, its tier, and whether it
was asked to yield its slot

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite takes them in place (a batch would copy the jobs table, which
    # the rows that refer to it forbid).
    op.add_column("jobs", sa.Column("tier", sa.String(length=16), nullable=False, server_default="batch"))
    op.add_column("jobs", sa.Column("gpu_memory_mb", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("gpu_share", sa.Float(), nullable=True))
    op.add_column("jobs", sa.Column("preempt_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("jobs", sa.Column("preemptions", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for column in ("preemptions", "preempt_requested", "gpu_share", "gpu_memory_mb", "tier"):
            batch_op.drop_column(column)
