"""Execution backends beside Celery: the id a job has in the backend it was submitted to (a
SLURM job id), while labtrain waits for it to start or end there

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-12
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: SQLite takes it in place (a batch would copy the jobs table).
    op.add_column("jobs", sa.Column("backend_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("backend_id")
