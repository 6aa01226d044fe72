"""jobs trained on from a fine-tuned model: the original base model, the parent job and the
parent adapter the job starts from

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_model", sa.String(256), nullable=True))
        batch_op.add_column(sa.Column("parent_job_id", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("parent_adapter_path", sa.String(512), nullable=True))
    # every job so far was trained on a catalogue model, given as `model`
    op.execute("UPDATE jobs SET base_model = model WHERE base_model IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("parent_adapter_path")
        batch_op.drop_column("parent_job_id")
        batch_op.drop_column("base_model")
