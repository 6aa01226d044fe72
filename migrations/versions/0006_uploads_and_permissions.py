"""uploads and their parts, checkpoint permissions, and 64-bit file sizes (an upload may hold
up to 8 GB)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.alter_column(
            "bytes", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False
        )
    op.create_table(
        "uploads",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("mime_type", sa.String(length=255), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("file_expires_after", sa.Integer(), nullable=True),
        sa.Column("file_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_uploads_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_uploads_status"), ["status"], unique=False)
    op.create_table(
        "upload_parts",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("upload_parts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_parts_upload_id"), ["upload_id"], unique=False)
    op.create_table(
        "checkpoint_permissions",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("fine_tuned_model_checkpoint", sa.String(length=512), nullable=False),
        sa.Column("owner_project_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["owner_project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("fine_tuned_model_checkpoint", "project_id"),
    )
    with op.batch_alter_table("checkpoint_permissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_checkpoint_permissions_fine_tuned_model_checkpoint"),
            ["fine_tuned_model_checkpoint"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_checkpoint_permissions_project_id"), ["project_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("checkpoint_permissions")
    op.drop_table("upload_parts")
    op.drop_table("uploads")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.alter_column(
            "bytes", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False
        )
