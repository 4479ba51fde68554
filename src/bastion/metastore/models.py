"""SQLAlchemy models of the metastore. Migrations in ``migrations/versions`` mirror them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class PrincipalRow(Base):
    """A user, group or service principal. ``name`` is what grants refer to."""

    __tablename__ = "principals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(255), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    secret_hash: Mapped[str | None] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # OAuth access tokens issued before this instant (ms) are refused (migration 0004).
    sessions_not_before: Mapped[int | None] = mapped_column(BigInteger)


class MembershipRow(Base):
    __tablename__ = "memberships"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )


class TokenRow(Base):
    """A credential, stored only as a hash: a personal access token (``pat``), an OAuth
    refresh token (``refresh``) or an OAuth login ``session`` (whose access tokens carry its
    id). ``parent_id`` is the credential it was created with: revoking a credential revokes
    what was created through it."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    principal_id: Mapped[int] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(128), nullable=False, unique=True)
    comment: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[int | None] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
    parent_id: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(64))
    attributes: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_tokens_principal", "principal_id"),
        Index("ix_tokens_parent", "parent_id"),
        Index("ix_tokens_session", "session_id"),
    )


class SecurableRow(Base):
    """A governed object: catalog, schema, table, function, model, volume, endpoint, app."""

    __tablename__ = "securables"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    full_name: Mapped[str] = mapped_column(String(767), nullable=False)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("securables.id", ondelete="CASCADE"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("principals.id"), nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)
    properties: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(255), nullable=False)

    __table_args__ = (
        UniqueConstraint("type", "full_name", name="uq_securables_type_name"),
        Index("ix_securables_parent", "parent_id"),
    )


class GrantRow(Base):
    __tablename__ = "grants"

    securable_id: Mapped[int] = mapped_column(
        ForeignKey("securables.id", ondelete="CASCADE"), primary_key=True
    )
    principal_id: Mapped[int] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )
    privilege: Mapped[str] = mapped_column(String(64), primary_key=True)


class ChangeCounterRow(Base):
    """A single row whose ``version`` grows on every change that caches depend on."""

    __tablename__ = "change_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)


# -- registry, secrets and serving (migration 0002) --------------------------------------------


class ModelVersionRow(Base):
    """One immutable version of a registered model (a ``registered_model`` securable)."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(
        ForeignKey("securables.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    status_message: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, nullable=False)
    artifact_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    storage_location: Mapped[str | None] = mapped_column(Text)
    artifact_config: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(128))
    run_id: Mapped[str | None] = mapped_column(String(255))
    comment: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(255), nullable=False)

    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_version"),)


class ModelAliasRow(Base):
    """``@alias`` → version of one registered model; a version may carry several aliases."""

    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("securables.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)


class SecretScopeRow(Base):
    __tablename__ = "secret_scopes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_by: Mapped[str] = mapped_column(String(255), nullable=False)


class SecretRow(Base):
    """A secret value, encrypted (Fernet) with a key derived from the server's signing key."""

    __tablename__ = "secrets"

    scope_id: Mapped[int] = mapped_column(
        ForeignKey("secret_scopes.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class SecretAclRow(Base):
    __tablename__ = "secret_acls"

    scope_id: Mapped[int] = mapped_column(
        ForeignKey("secret_scopes.id", ondelete="CASCADE"), primary_key=True
    )
    principal_id: Mapped[int] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(16), nullable=False)


class ServingEndpointRow(Base):
    """A serving endpoint's configuration; grants live on its ``serving_endpoint`` securable."""

    __tablename__ = "serving_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    securable_id: Mapped[int] = mapped_column(
        ForeignKey("securables.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    name: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    config: Mapped[str] = mapped_column(Text, nullable=False)
    config_version: Mapped[int] = mapped_column(Integer, nullable=False)
    ai_gateway: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[str | None] = mapped_column(Text)
    creator: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The principal who last wrote ``config`` (migration 0004); None: the creator.
    config_updated_by: Mapped[int | None] = mapped_column(Integer)


class BundleDeploymentRow(Base):
    """A bundle's deployment to one target: shared state, and a lease-based lock (0005)."""

    __tablename__ = "bundle_deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bundle_name: Mapped[str] = mapped_column(String(128), nullable=False)
    target_key: Mapped[str] = mapped_column(String(255), nullable=False)
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("principals.id", ondelete="CASCADE"), nullable=False
    )
    state: Mapped[str] = mapped_column(Text, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    lock_holder: Mapped[str | None] = mapped_column(String(64))
    lock_principal: Mapped[str | None] = mapped_column(String(255))
    lock_expires_at: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(255), nullable=False)

    __table_args__ = (
        UniqueConstraint("bundle_name", "target_key", name="uq_bundle_deployments_target"),
    )


# -- apps (migration 0006) ---------------------------------------------------------------------


class AppRow(Base):
    """An app: its ``app`` securable (grants ``CAN_USE`` / ``CAN_MANAGE``), its own service
    principal, the scopes its users' forwarded tokens get, and the resources granted to it."""

    __tablename__ = "apps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    securable_id: Mapped[int] = mapped_column(
        ForeignKey("securables.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    name: Mapped[str] = mapped_column(String(63), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    service_principal_id: Mapped[int | None] = mapped_column(Integer)
    user_api_scopes: Mapped[str | None] = mapped_column(Text)
    resources: Mapped[str | None] = mapped_column(Text)
    # Who last set ``resources``: declared secrets are used on their behalf.
    resources_set_by: Mapped[int | None] = mapped_column(Integer)
    # ``ACTIVE`` (should run) or ``STOPPED``.
    compute_desired: Mapped[str] = mapped_column(String(16), nullable=False)
    active_deployment_id: Mapped[str | None] = mapped_column(String(64))
    creator: Mapped[str] = mapped_column(String(255), nullable=False)
    updater: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)


class AppDeploymentRow(Base):
    """One deployment of an app's source: the snapshot copied under ``BASTION_HOME/apps``."""

    __tablename__ = "app_deployments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), nullable=False)
    source_code_path: Mapped[str] = mapped_column(Text, nullable=False)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    message: Mapped[str | None] = mapped_column(Text)
    command: Mapped[str | None] = mapped_column(Text)
    env: Mapped[str | None] = mapped_column(Text)
    creator: Mapped[str] = mapped_column(String(255), nullable=False)
    created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_app_deployments_app", "app_id"),)
