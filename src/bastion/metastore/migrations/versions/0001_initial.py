"""Initial metastore: principals, memberships, tokens, securables, grants, audit, counter.

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
        "principals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("secret_hash", sa.String(255)),
        sa.Column("external_id", sa.String(255)),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column(
            "group_id",
            sa.Integer,
            sa.ForeignKey("principals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "member_id",
            sa.Integer,
            sa.ForeignKey("principals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "principal_id",
            sa.Integer,
            sa.ForeignKey("principals.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("token_hash", sa.String(128), nullable=False, unique=True),
        sa.Column("comment", sa.Text),
        sa.Column("scopes", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger),
        sa.Column("revoked_at", sa.BigInteger),
    )
    op.create_index("ix_tokens_principal", "tokens", ["principal_id"])
    op.create_table(
        "securables",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("full_name", sa.String(767), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("securables.id", ondelete="CASCADE")),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("properties", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.UniqueConstraint("type", "full_name", name="uq_securables_type_name"),
    )
    op.create_index("ix_securables_parent", "securables", ["parent_id"])
    op.create_table(
        "grants",
        sa.Column(
            "securable_id",
            sa.Integer,
            sa.ForeignKey("securables.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "principal_id",
            sa.Integer,
            sa.ForeignKey("principals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("privilege", sa.String(64), primary_key=True),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("event_time", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("user_email", sa.String(255)),
        sa.Column("service_name", sa.String(64), nullable=False),
        sa.Column("action_name", sa.String(128), nullable=False),
        sa.Column("request_params", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("error_message", sa.Text),
        sa.Column("source_ip_address", sa.String(64)),
        sa.Column("user_agent", sa.Text),
    )
    op.create_index("ix_audit_time", "audit_events", ["event_time"])
    counter = op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "version": 1}])


def downgrade() -> None:
    for table in (
        "change_counter",
        "audit_events",
        "grants",
        "securables",
        "tokens",
        "memberships",
        "principals",
    ):
        op.drop_table(table)
