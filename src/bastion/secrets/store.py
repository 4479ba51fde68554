"""SQL store of secret scopes, encrypted secret values and scope ACLs (Databricks semantics).

Permissions per scope are ``READ`` < ``WRITE`` < ``MANAGE``; the creator of a scope gets
``MANAGE``; admins may do everything. Values are encrypted with Fernet (AES-128-CBC + HMAC)
under a key derived (HKDF) from the server's signing key, so the metastore alone never reveals
them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.clock import Clock, now_ms
from bastion.errors import AlreadyExists, BastionError, InvalidRequest, NotFound, PermissionDenied
from bastion.identity.jwt_codec import load_or_create_key
from bastion.identity.model import Caller
from bastion.metastore.db import Metastore
from bastion.metastore.models import PrincipalRow, SecretAclRow, SecretRow, SecretScopeRow
from bastion.secrets.references import SecretReference, validate_name

MAX_SECRET_BYTES = 128 * 1024


class SecretPermission(StrEnum):
    READ = "READ"
    WRITE = "WRITE"
    MANAGE = "MANAGE"

    @property
    def rank(self) -> int:
        return {"READ": 1, "WRITE": 2, "MANAGE": 3}[self.value]

    @classmethod
    def parse(cls, text: str) -> SecretPermission:
        try:
            return cls(str(text).strip().upper())
        except ValueError:
            raise InvalidRequest(
                f"Unknown secret permission {text!r}; expected READ, WRITE or MANAGE."
            ) from None


@dataclass(frozen=True)
class SecretScopeInfo:
    name: str
    created_at: int
    created_by: str


@dataclass(frozen=True)
class SecretMetadata:
    key: str
    last_updated_timestamp: int


@dataclass(frozen=True)
class SecretAcl:
    principal: str
    permission: SecretPermission


def secret_cipher(signing_key_file: Path) -> Fernet:
    """The Fernet cipher for secret values, derived from the server's signing key."""
    material = load_or_create_key(signing_key_file)
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion secrets at rest v1"
    ).derive(material)
    return Fernet(base64.urlsafe_b64encode(key))


class SecretStore:
    def __init__(self, metastore: Metastore, clock: Clock, cipher: Fernet) -> None:
        self._metastore = metastore
        self._clock = clock
        self._cipher = cipher

    # -- helpers ------------------------------------------------------------------------------

    def _scope(self, session: Session, name: str) -> SecretScopeRow:
        row = session.scalar(select(SecretScopeRow).where(SecretScopeRow.name == name))
        if row is None:
            raise NotFound(f"Secret scope '{name}' does not exist.")
        return row

    def _permission(
        self, session: Session, caller: Caller, scope: SecretScopeRow
    ) -> SecretPermission | None:
        if caller.is_admin:
            return SecretPermission.MANAGE
        best: SecretPermission | None = None
        for (permission,) in session.execute(
            select(SecretAclRow.permission).where(
                SecretAclRow.scope_id == scope.id,
                SecretAclRow.principal_id.in_(caller.principal_ids),
            )
        ).all():
            held = SecretPermission(permission)
            if best is None or held.rank > best.rank:
                best = held
        return best

    def _require(
        self, session: Session, caller: Caller, name: str, needed: SecretPermission
    ) -> SecretScopeRow:
        scope = self._scope(session, name)
        held = self._permission(session, caller, scope)
        if held is None or held.rank < needed.rank:
            raise PermissionDenied(
                f"User {caller.name} does not have {needed.value} permission on secret scope "
                f"'{name}'."
            )
        return scope

    # -- scopes -------------------------------------------------------------------------------

    def create_scope(
        self, caller: Caller, name: str, initial_manage_principal: int | None = None
    ) -> SecretScopeInfo:
        name = validate_name(name, "scope name")
        now = now_ms(self._clock)
        with self._metastore.session() as session:
            row = SecretScopeRow(name=name, created_at=now, created_by=caller.name)
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise AlreadyExists(f"Secret scope '{name}' already exists.") from None
            owner = initial_manage_principal or caller.principal_id
            session.add(
                SecretAclRow(
                    scope_id=row.id, principal_id=owner, permission=SecretPermission.MANAGE
                )
            )
            self._metastore.bump_version(session)
            session.commit()
            return SecretScopeInfo(row.name, row.created_at, row.created_by)

    def delete_scope(self, caller: Caller, name: str) -> None:
        with self._metastore.session() as session:
            scope = self._require(session, caller, name, SecretPermission.MANAGE)
            session.execute(delete(SecretRow).where(SecretRow.scope_id == scope.id))
            session.execute(delete(SecretAclRow).where(SecretAclRow.scope_id == scope.id))
            session.delete(scope)
            self._metastore.bump_version(session)
            session.commit()

    def list_scopes(self, caller: Caller) -> list[SecretScopeInfo]:
        """Scopes the caller holds any permission on (every scope, for admins)."""
        with self._metastore.session() as session:
            rows = session.scalars(select(SecretScopeRow).order_by(SecretScopeRow.name)).all()
            return [
                SecretScopeInfo(r.name, r.created_at, r.created_by)
                for r in rows
                if self._permission(session, caller, r) is not None
            ]

    # -- values -------------------------------------------------------------------------------

    def put(self, caller: Caller, scope: str, key: str, value: str | bytes) -> None:
        key = validate_name(key, "key")
        raw = value.encode() if isinstance(value, str) else value
        if len(raw) > MAX_SECRET_BYTES:
            raise InvalidRequest(f"A secret may hold at most {MAX_SECRET_BYTES} bytes.")
        token = self._cipher.encrypt(raw).decode("ascii")
        with self._metastore.session() as session:
            row = self._require(session, caller, scope, SecretPermission.WRITE)
            existing = session.get(SecretRow, (row.id, key))
            if existing is None:
                session.add(
                    SecretRow(
                        scope_id=row.id,
                        key=key,
                        ciphertext=token,
                        updated_at=now_ms(self._clock),
                    )
                )
            else:
                existing.ciphertext = token
                existing.updated_at = now_ms(self._clock)
            self._metastore.bump_version(session)
            session.commit()

    def delete(self, caller: Caller, scope: str, key: str) -> None:
        with self._metastore.session() as session:
            row = self._require(session, caller, scope, SecretPermission.WRITE)
            existing = session.get(SecretRow, (row.id, key))
            if existing is None:
                raise NotFound(f"Secret '{key}' does not exist in scope '{scope}'.")
            session.delete(existing)
            self._metastore.bump_version(session)
            session.commit()

    def list_keys(self, caller: Caller, scope: str) -> list[SecretMetadata]:
        with self._metastore.session() as session:
            row = self._require(session, caller, scope, SecretPermission.READ)
            return [
                SecretMetadata(s.key, s.updated_at)
                for s in session.scalars(
                    select(SecretRow).where(SecretRow.scope_id == row.id).order_by(SecretRow.key)
                )
            ]

    def check_readable(self, caller: Caller, reference: SecretReference) -> None:
        """Raise unless the caller may use ``reference`` (READ on its scope, and it exists)."""
        with self._metastore.session() as session:
            row = self._require(session, caller, reference.scope, SecretPermission.READ)
            if session.get(SecretRow, (row.id, reference.key)) is None:
                raise InvalidRequest(f"Secret {reference} does not exist.")

    def resolve(self, reference: SecretReference) -> str:
        """The plaintext of ``reference``, for in-process use only (never return or log it)."""
        with self._metastore.session() as session:
            scope = self._scope(session, reference.scope)
            row = session.get(SecretRow, (scope.id, reference.key))
            if row is None:
                raise NotFound(f"Secret {reference} does not exist.")
            try:
                return self._cipher.decrypt(row.ciphertext.encode("ascii")).decode()
            except InvalidToken:
                raise BastionError(
                    f"Secret {reference} cannot be decrypted: the server's signing key changed "
                    "since it was stored; put the secret again."
                ) from None

    # -- ACLs ---------------------------------------------------------------------------------

    def put_acl(
        self, caller: Caller, scope: str, principal_id: int, permission: SecretPermission
    ) -> None:
        with self._metastore.session() as session:
            row = self._require(session, caller, scope, SecretPermission.MANAGE)
            existing = session.get(SecretAclRow, (row.id, principal_id))
            if existing is None:
                session.add(
                    SecretAclRow(scope_id=row.id, principal_id=principal_id, permission=permission)
                )
            else:
                existing.permission = permission
            self._metastore.bump_version(session)
            session.commit()

    def delete_acl(self, caller: Caller, scope: str, principal_id: int) -> None:
        with self._metastore.session() as session:
            row = self._require(session, caller, scope, SecretPermission.MANAGE)
            existing = session.get(SecretAclRow, (row.id, principal_id))
            if existing is None:
                raise NotFound(f"No ACL for that principal on secret scope '{scope}'.")
            session.delete(existing)
            self._metastore.bump_version(session)
            session.commit()

    def list_acls(self, caller: Caller, scope: str) -> list[SecretAcl]:
        with self._metastore.session() as session:
            row = self._require(session, caller, scope, SecretPermission.MANAGE)
            rows = session.execute(
                select(PrincipalRow.name, SecretAclRow.permission)
                .join(PrincipalRow, PrincipalRow.id == SecretAclRow.principal_id)
                .where(SecretAclRow.scope_id == row.id)
                .order_by(PrincipalRow.name)
            ).all()
            return [SecretAcl(name, SecretPermission(p)) for name, p in rows]
