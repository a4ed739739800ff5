"""The schema of gpuhub 0.1, before migrations existed (hosts, devices,
allocations, shares, meta). A database made by that version is stamped with this
revision and upgraded from here.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )
    op.create_table(
        "hosts",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("cpus", sa.Float, nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("drained", sa.Boolean, nullable=True),
        sa.Column("last_heartbeat", sa.Float, nullable=True),
        sa.Column("docker", sa.JSON, nullable=True),
        sa.Column("usage", sa.JSON, nullable=True),
        sa.Column("unknown", sa.JSON, nullable=True),
        sa.Column("details", sa.JSON, nullable=True),
    )
    op.create_table(
        "allocations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("server", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("cpu", sa.Float, nullable=False),
        sa.Column("mem_mb", sa.Integer, nullable=False),
        sa.Column("max_hours", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("released_at", sa.Float, nullable=True),
    )
    op.create_index("ix_allocations_state", "allocations", ["state"])
    op.create_index("ix_allocations_user", "allocations", ["user"])
    op.create_table(
        "devices",
        sa.Column("uuid", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), sa.ForeignKey("hosts.name", ondelete="CASCADE"), nullable=False),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("memory_mb", sa.Integer, nullable=False),
        sa.Column("island", sa.String(64), nullable=False),
    )
    op.create_index("ix_devices_host", "devices", ["host"])
    op.create_table(
        "shares",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "allocation_id", sa.String(32),
            sa.ForeignKey("allocations.id", ondelete="CASCADE"), nullable=False,
        ),
        sa.Column("device_uuid", sa.String(128), nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
    )
    op.create_index("ix_shares_allocation_id", "shares", ["allocation_id"])
    op.create_index("ix_shares_device_uuid", "shares", ["device_uuid"])


def downgrade():
    for table in ("shares", "devices", "allocations", "hosts", "meta"):
        op.drop_table(table)
