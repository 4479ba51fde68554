"""Apps: the app record (securable, service principal, user API scopes, resources) and its
deployments.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "securable_id",
            sa.Integer,
            sa.ForeignKey("securables.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("service_principal_id", sa.Integer),
        sa.Column("user_api_scopes", sa.Text),
        sa.Column("resources", sa.Text),
        sa.Column("resources_set_by", sa.Integer),
        sa.Column("compute_desired", sa.String(16), nullable=False),
        sa.Column("active_deployment_id", sa.String(64)),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("updater", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "app_deployments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "app_id", sa.Integer, sa.ForeignKey("apps.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("source_code_path", sa.Text, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("command", sa.Text),
        sa.Column("env", sa.Text),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_app_deployments_app", "app_deployments", ["app_id"])


def downgrade() -> None:
    op.drop_index("ix_app_deployments_app", table_name="app_deployments")
    op.drop_table("app_deployments")
    op.drop_table("apps")
