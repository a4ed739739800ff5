"""Quotas per host pool: a quota row names the pool it limits ("": every pool
together, as before); the primary key becomes (kind, name, pool). The table is
rebuilt (its unnamed primary key cannot be altered the same way everywhere).

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

LIMITS = ("gpus", "sessions", "gpu_hours", "priority", "share", "max_wait_hours")


def _table(name: str, with_pool: bool):
    cols = [sa.Column("kind", sa.String(8), primary_key=True),
            sa.Column("name", sa.String(255), primary_key=True)]
    if with_pool:
        cols.append(sa.Column("pool", sa.String(63), primary_key=True, server_default=""))
    cols += [sa.Column("gpus", sa.Integer, nullable=True),
             sa.Column("sessions", sa.Integer, nullable=True),
             sa.Column("gpu_hours", sa.Float, nullable=True),
             sa.Column("priority", sa.Integer, nullable=True),
             sa.Column("share", sa.Float, nullable=True),
             sa.Column("max_wait_hours", sa.Float, nullable=True)]
    return op.create_table(name, *cols)


def _move(with_pool: bool, where: str = ""):
    names = ", ".join(("kind", "name") + LIMITS)
    op.execute(f"INSERT INTO quotas_next ({names}) SELECT {names} FROM quotas{where}")
    op.drop_table("quotas")
    op.rename_table("quotas_next", "quotas")


def upgrade():
    _table("quotas_next", True)
    _move(True)


def downgrade():
    _table("quotas_next", False)
    _move(False, " WHERE pool = ''")
