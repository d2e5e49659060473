"""workers report their GPU's utilisation and memory in use with each heartbeat

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gpu_utilization", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("gpu_memory_used_mb", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("gpu_memory_used_mb")
        batch_op.drop_column("gpu_utilization")
