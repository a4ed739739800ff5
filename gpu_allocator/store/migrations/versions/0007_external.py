"""External allocations: shares another scheduler (Slurm) granted on the hosts it
owns, mirrored into the ledger with their source and job id (NULL: the
allocator's own share). A host such a scheduler owns has the state ``external``
(no column: the state column takes the value).

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("allocations") as t:
        t.add_column(sa.Column("source", sa.String(16), nullable=True))
        t.add_column(sa.Column("external_id", sa.String(64), nullable=True))
        t.create_index("ix_allocations_external_id", ["external_id"])


def downgrade():
    with op.batch_alter_table("allocations") as t:
        t.drop_index("ix_allocations_external_id")
        t.drop_column("external_id")
        t.drop_column("source")
