"""Advance reservations (N GPUs of a model on one host, from T1 to T2, for one
user) and a priority that an admin may set on one waiting request.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False, index=True),
        sa.Column("host", sa.String(255), nullable=False, index=True),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("devices", sa.JSON, nullable=False),
        sa.Column("start_at", sa.Float, nullable=False, index=True),
        sa.Column("end_at", sa.Float, nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
    )
    with op.batch_alter_table("requests") as t:
        t.add_column(sa.Column("priority", sa.Integer, nullable=True))


def downgrade():
    with op.batch_alter_table("requests") as t:
        t.drop_column("priority")
    op.drop_table("reservations")
