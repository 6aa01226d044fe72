"""job samples: a bounded number of graded completions per step and per validation run

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_samples",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("group_index", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=False),
        sa.Column("completion", sa.Text(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=False),
        sa.Column("sub_rewards", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
    )
    with op.batch_alter_table("job_samples", schema=None) as batch_op:
        batch_op.create_index(
            "ix_job_samples_job_split_step", ["job_id", "split", "step"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("job_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_job_samples_job_split_step")
    op.drop_table("job_samples")
