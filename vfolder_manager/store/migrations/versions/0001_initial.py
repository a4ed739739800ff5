"""vfolders, shares, quotas, uploads, mounts

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vfolders",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner_kind", sa.String(8), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("auto_mount", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("deleted_at", sa.DateTime, nullable=True),
        sa.Column("quota_bytes", sa.BigInteger, nullable=True),
        sa.Column("quota_files", sa.BigInteger, nullable=True),
        sa.Column("usage_bytes", sa.BigInteger, nullable=False),
        sa.Column("usage_files", sa.BigInteger, nullable=False),
        sa.Column("usage_at", sa.DateTime, nullable=True),
        sa.Column("cloned_from", sa.String(32), nullable=True),
        sa.Column("progress", sa.Text, nullable=True),
    )
    op.create_index(
        "uq_vfolders_live_name", "vfolders", ["owner_kind", "owner", "name"], unique=True,
        sqlite_where=sa.text("state != 'trashed'"), postgresql_where=sa.text("state != 'trashed'"),
    )
    op.create_table(
        "vfolder_shares",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("vfolder_id", sa.String(32), sa.ForeignKey("vfolders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("permission", sa.String(2), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("vfolder_id", "kind", "name", name="uq_share_target"),
    )
    op.create_table(
        "vfolder_quotas",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("max_bytes", sa.BigInteger, nullable=True),
        sa.Column("max_files", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "vfolder_uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("vfolder_id", sa.String(32), sa.ForeignKey("vfolders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "vfolder_mounts",
        sa.Column("session", sa.String(255), primary_key=True),
        sa.Column("vfolder_id", sa.String(32), sa.ForeignKey("vfolders.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(2), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("vfolder_mounts", "vfolder_uploads", "vfolder_quotas", "vfolder_shares"):
        op.drop_table(table)
    op.drop_index("uq_vfolders_live_name", table_name="vfolders")
    op.drop_table("vfolders")
