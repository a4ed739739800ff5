"""The queue: requests waiting for capacity (and how they ended), quotas and
queue policy per user and group, and a share's extension of its run time.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False, index=True),
        sa.Column("groups", sa.JSON, nullable=True),
        sa.Column("server", sa.String(255), nullable=False, server_default=""),
        sa.Column("hub_server", sa.String(255), nullable=True),
        sa.Column("idem_key", sa.String(200), nullable=True, unique=True),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("cpu", sa.Float, nullable=False),
        sa.Column("mem_mb", sa.Integer, nullable=False),
        sa.Column("max_hours", sa.Float, nullable=False),
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("first_eta", sa.Float, nullable=True),
        sa.Column("first_latest", sa.Float, nullable=True),
    )
    op.create_table(
        "quotas",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("gpus", sa.Integer, nullable=True),
        sa.Column("sessions", sa.Integer, nullable=True),
        sa.Column("gpu_hours", sa.Float, nullable=True),
        sa.Column("priority", sa.Integer, nullable=True),
        sa.Column("share", sa.Float, nullable=True),
        sa.Column("max_wait_hours", sa.Float, nullable=True),
    )
    with op.batch_alter_table("allocations") as t:
        t.add_column(sa.Column("extended", sa.Boolean, nullable=True))


def downgrade():
    with op.batch_alter_table("allocations") as t:
        t.drop_column("extended")
    op.drop_table("quotas")
    op.drop_table("requests")
