"""Credentials end with what granted them: login sessions, token lineage, token attributes.

- ``principals.sessions_not_before``: OAuth access tokens issued before it are refused (set
  when a password changes or a principal is disabled).
- ``tokens.parent_id``: the credential (token or session id) a token was created with, so
  that revoking one revokes everything created through it.
- ``tokens.session_id``: the login session a refresh token continues.
- ``tokens.attributes``: server-set facts a credential carries (e.g. the red-team scan it
  belongs to), never settable by a client.
- ``serving_endpoints.config_updated_by``: who last wrote an endpoint's config, whose right to
  read the secrets it references is checked again whenever what is served changes.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("sessions_not_before", sa.BigInteger, nullable=True))
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("session_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("attributes", sa.Text, nullable=True))
        batch.create_index("ix_tokens_parent", ["parent_id"])
        batch.create_index("ix_tokens_session", ["session_id"])
    with op.batch_alter_table("serving_endpoints") as batch:
        batch.add_column(sa.Column("config_updated_by", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("serving_endpoints") as batch:
        batch.drop_column("config_updated_by")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_index("ix_tokens_session")
        batch.drop_index("ix_tokens_parent")
        batch.drop_column("attributes")
        batch.drop_column("session_id")
        batch.drop_column("parent_id")
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("sessions_not_before")
