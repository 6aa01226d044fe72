"""job attempts: the fencing token, the attempts whose worker was lost, when the job was sent
and how often it was sent again

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attempt", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("lost_attempts", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("enqueued_at", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("resend_count", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("resend_count")
        batch_op.drop_column("enqueued_at")
        batch_op.drop_column("lost_attempts")
        batch_op.drop_column("attempt")
