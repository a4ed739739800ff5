"""Host pools: the pool a waiting request named (NULL: any open to its user).
A host's pools live in its ``details`` (no column).

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("requests") as t:
        t.add_column(sa.Column("pool", sa.String(63), nullable=True))


def downgrade():
    with op.batch_alter_table("requests") as t:
        t.drop_column("pool")
