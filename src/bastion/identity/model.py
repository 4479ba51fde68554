"""The identity domain objects handed around by the stores and the authenticator."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

ADMINS_GROUP = "admins"
USERS_GROUP = "users"
ALL_SCOPES = "all-apis"
# Credential attribute: the red-team scan a credential was minted for (server-set only).
SCAN_ATTRIBUTE = "redteam_scan"
# Credential attribute: the app a forwarded (on-behalf-of-user) token acts through.
APP_ATTRIBUTE = "app"
# Scopes every credential has, as in Databricks (they cannot be requested or withheld).
DEFAULT_SCOPES = frozenset({"iam.current-user:read", "iam.access-control:read"})


class PrincipalKind(StrEnum):
    USER = "user"
    GROUP = "group"
    SERVICE_PRINCIPAL = "service_principal"


@dataclass(frozen=True)
class PrincipalRecord:
    id: int
    kind: PrincipalKind
    name: str
    display_name: str
    active: bool
    external_id: str | None
    created_at: int


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    kind: str
    principal_id: int
    comment: str | None
    scopes: tuple[str, ...] | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    parent_id: str | None = None
    session_id: str | None = None
    attributes: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Caller:
    """An authenticated principal, with the groups it belongs to and its credential's scopes."""

    principal_id: int
    kind: PrincipalKind
    name: str
    display_name: str
    groups: frozenset[str]
    group_ids: frozenset[int]
    scopes: frozenset[str] | None = None
    token_id: str | None = None
    credential: str = "pat"
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    #: The OAuth login session an access token belongs to (None for PATs).
    session_id: str | None = None

    @property
    def credential_id(self) -> str | None:
        """What a credential created by this caller descends from: the PAT, or the session."""
        return self.session_id if self.credential == "oauth" else self.token_id

    @property
    def acting_app(self) -> str | None:
        """The app this caller acts through (a forwarded token), or None."""
        return self.extra.get(APP_ATTRIBUTE)

    @property
    def is_admin(self) -> bool:
        return ADMINS_GROUP in self.groups

    @property
    def principal_ids(self) -> frozenset[int]:
        """This principal and every group it belongs to, directly or through nesting."""
        return self.group_ids | {self.principal_id}

    def has_scope(self, scope: str) -> bool:
        """Whether the credential allows ``scope``; ``x`` also allows ``x:read``."""
        if self.scopes is None or ALL_SCOPES in self.scopes or scope in DEFAULT_SCOPES:
            return True
        if scope in self.scopes:
            return True
        return scope.endswith(":read") and scope[: -len(":read")] in self.scopes
