"""Drop the metastore's audit table: audit events live in the Delta table system.access.audit.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_audit_time", table_name="audit_events")
    op.drop_table("audit_events")


def downgrade() -> None:
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
