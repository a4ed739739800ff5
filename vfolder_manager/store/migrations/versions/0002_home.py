"""vfolders.kind (a user's home) and vfolders.migrated_from

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vfolders") as t:
        t.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="vfolder"))
        t.add_column(sa.Column("migrated_from", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vfolders") as t:
        t.drop_column("migrated_from")
        t.drop_column("kind")
