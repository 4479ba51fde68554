"""Bundle deployments: one row per bundle and target — the state every deployer shares, and
the lock that keeps two deploys of the same target from interleaving.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bundle_deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bundle_name", sa.String(128), nullable=False),
        sa.Column("target_key", sa.String(255), nullable=False),
        sa.Column(
            "owner_id",
            sa.Integer,
            sa.ForeignKey("principals.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("lock_holder", sa.String(64)),
        sa.Column("lock_principal", sa.String(255)),
        sa.Column("lock_expires_at", sa.BigInteger),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("bundle_name", "target_key", name="uq_bundle_deployments_target"),
    )


def downgrade() -> None:
    op.drop_table("bundle_deployments")
