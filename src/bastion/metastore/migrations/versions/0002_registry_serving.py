"""Registry (model versions, aliases), secrets (scopes, values, ACLs) and serving endpoints.

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
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("securables.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_message", sa.Text),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("artifact_kind", sa.String(32), nullable=False),
        sa.Column("storage_location", sa.Text),
        sa.Column("artifact_config", sa.Text),
        sa.Column("content_hash", sa.String(128)),
        sa.Column("run_id", sa.String(255)),
        sa.Column("comment", sa.Text),
        sa.Column("tags", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_version"),
    )
    op.create_table(
        "model_aliases",
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey("securables.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("alias", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "secret_scopes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
    )
    op.create_table(
        "secrets",
        sa.Column(
            "scope_id",
            sa.Integer,
            sa.ForeignKey("secret_scopes.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "secret_acls",
        sa.Column(
            "scope_id",
            sa.Integer,
            sa.ForeignKey("secret_scopes.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "principal_id",
            sa.Integer,
            sa.ForeignKey("principals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("permission", sa.String(16), nullable=False),
    )
    op.create_table(
        "serving_endpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "securable_id",
            sa.Integer,
            sa.ForeignKey("securables.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        ),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("config_version", sa.Integer, nullable=False),
        sa.Column("ai_gateway", sa.Text),
        sa.Column("tags", sa.Text),
        sa.Column("creator", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "serving_endpoints",
        "secret_acls",
        "secrets",
        "secret_scopes",
        "model_aliases",
        "model_versions",
    ):
        op.drop_table(table)
