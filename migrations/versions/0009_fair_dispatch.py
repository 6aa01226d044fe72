"""fair dispatch: when a worker last took a job of each project; job-scoped internal keys

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_dispatched_at", sa.Float(), nullable=True))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("job_attempt", sa.Integer(), nullable=True))
        batch_op.create_index("ix_api_keys_job_id", ["job_id"])


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_job_id")
        batch_op.drop_column("job_attempt")
        batch_op.drop_column("job_id")
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_column("last_dispatched_at")
