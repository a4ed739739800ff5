"""The in-memory pool: idempotency keys and hub servers on allocations (retried
grants, reconciliation with the hub), the accepted GPU models; heartbeat samples
and unknown allocations no longer written to the database.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("allocations") as t:
        t.add_column(sa.Column("idem_key", sa.String(200), nullable=True))
        t.add_column(sa.Column("hub_server", sa.String(255), nullable=True))
        t.add_column(sa.Column("models", sa.JSON, nullable=True))
        t.create_unique_constraint("uq_allocations_idem_key", ["idem_key"])
    with op.batch_alter_table("hosts") as t:
        t.drop_column("usage")
        t.drop_column("unknown")


def downgrade():
    with op.batch_alter_table("hosts") as t:
        t.add_column(sa.Column("usage", sa.JSON, nullable=True))
        t.add_column(sa.Column("unknown", sa.JSON, nullable=True))
    with op.batch_alter_table("allocations") as t:
        t.drop_constraint("uq_allocations_idem_key", type_="unique")
        t.drop_column("models")
        t.drop_column("hub_server")
        t.drop_column("idem_key")
