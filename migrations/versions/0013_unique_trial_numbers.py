"""A search's trial numbers are unique: a trial number is taken by inserting its job

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    doubled = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT parent_id, trial_number FROM jobs WHERE parent_id IS NOT NULL "
                "GROUP BY parent_id, trial_number HAVING COUNT(*) > 1"
            )
        )
        .all()
    )
    if doubled:  # a search run before this fix with a dispatcher that died mid-step
        raise RuntimeError(
            f"{len(doubled)} search trial number(s) have two jobs (search {doubled[0][0]}, trial {doubled[0][1]}); "
            "delete or renumber the later job of each before upgrading"
        )
    # A plain CREATE INDEX: SQLite takes it in place (a batch would copy the jobs table).
    op.create_index("uq_jobs_parent_trial", "jobs", ["parent_id", "trial_number"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_jobs_parent_trial", table_name="jobs")
