"""Batch jobs (core.jobs): a command with a share, run as the hub server job-ID.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False, index=True),
        sa.Column("command", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("workdir", sa.String(1024), nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("submitted_at", sa.Float, nullable=False, index=True),
        sa.Column("spawned_at", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("reason", sa.String(1000), nullable=False, server_default=""),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
        sa.Column("home_vfolder", sa.String(64), nullable=False, server_default=""),
        sa.Column("removed", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade():
    op.drop_table("jobs")
