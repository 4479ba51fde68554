"""SQL store of principals, group memberships and hashed credentials."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.clock import Clock, now_ms
from bastion.errors import AlreadyExists, InvalidRequest, NotFound
from bastion.identity.credentials import (
    SECRET_PREFIX,
    hash_password,
    hash_token,
    new_id,
    new_token,
    verify_password,
)
from bastion.identity.model import (
    ADMINS_GROUP,
    USERS_GROUP,
    PrincipalKind,
    PrincipalRecord,
    TokenRecord,
)
from bastion.metastore.db import Metastore
from bastion.metastore.models import (
    GrantRow,
    MembershipRow,
    PrincipalRow,
    SecurableRow,
    TokenRow,
)

_USER_NAME = re.compile(r"^[A-Za-z0-9._%+\-@]{1,255}$")
_DISPLAY_NAME = re.compile(r"^[^\x00-\x1f`]{1,255}$")
BUILTIN_GROUPS = (ADMINS_GROUP, USERS_GROUP)


def _record(row: PrincipalRow) -> PrincipalRecord:
    return PrincipalRecord(
        id=row.id,
        kind=PrincipalKind(row.kind),
        name=row.name,
        display_name=row.display_name,
        active=row.active,
        external_id=row.external_id,
        created_at=row.created_at,
    )


def token_record(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        token_id=row.id,
        kind=row.kind,
        principal_id=row.principal_id,
        comment=row.comment,
        scopes=tuple(json.loads(row.scopes)) if row.scopes is not None else None,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        parent_id=row.parent_id,
        session_id=row.session_id,
        attributes=json.loads(row.attributes) if row.attributes else {},
    )


class IdentityStore:
    def __init__(self, metastore: Metastore, clock: Clock) -> None:
        self._metastore = metastore
        self._clock = clock

    # -- principals ---------------------------------------------------------------------------

    def create_principal(
        self,
        kind: PrincipalKind,
        name: str,
        display_name: str | None = None,
        *,
        password: str | None = None,
        active: bool = True,
        external_id: str | None = None,
    ) -> PrincipalRecord:
        if kind is PrincipalKind.USER and not _USER_NAME.match(name):
            raise InvalidRequest(f"Invalid userName {name!r}: use an email-like name.")
        if not _DISPLAY_NAME.match(display_name or name):
            raise InvalidRequest("Invalid display name: 1-255 printable characters.")
        row = PrincipalRow(
            kind=kind.value,
            name=name,
            display_name=display_name or name,
            active=active,
            password_hash=hash_password(password) if password else None,
            external_id=external_id,
            created_at=now_ms(self._clock),
        )
        with self._metastore.session() as session:
            session.add(row)
            try:
                session.flush()
                if kind is not PrincipalKind.GROUP:
                    users = self._group_row(session, USERS_GROUP)
                    if users is not None:
                        session.add(MembershipRow(group_id=users.id, member_id=row.id))
                self._metastore.bump_version(session)
                session.commit()
            except IntegrityError:
                session.rollback()
                raise AlreadyExists(f"A principal named {name!r} already exists.") from None
            return _record(row)

    def create_service_principal(
        self, display_name: str, application_id: str | None = None
    ) -> PrincipalRecord:
        return self.create_principal(
            PrincipalKind.SERVICE_PRINCIPAL, application_id or str(uuid.uuid4()), display_name
        )

    def get(self, principal_id: int, kind: PrincipalKind | None = None) -> PrincipalRecord:
        with self._metastore.session() as session:
            row = session.get(PrincipalRow, principal_id)
            if row is None or (kind is not None and row.kind != kind.value):
                label = (kind or PrincipalKind.USER).value.replace("_", " ")
                raise NotFound(f"No {label} with id {principal_id}.")
            return _record(row)

    def find(self, name: str) -> PrincipalRecord | None:
        with self._metastore.session() as session:
            row = session.scalar(select(PrincipalRow).where(PrincipalRow.name == name))
            return _record(row) if row else None

    def list_principals(self, kind: PrincipalKind) -> list[PrincipalRecord]:
        with self._metastore.session() as session:
            rows = session.scalars(
                select(PrincipalRow)
                .where(PrincipalRow.kind == kind.value)
                .order_by(PrincipalRow.id)
            )
            return [_record(r) for r in rows]

    def update(
        self,
        principal_id: int,
        *,
        display_name: str | None = None,
        active: bool | None = None,
        password: str | None = None,
        external_id: str | None = None,
    ) -> PrincipalRecord:
        with self._metastore.session() as session:
            row = session.get(PrincipalRow, principal_id)
            if row is None:
                raise NotFound(f"No principal with id {principal_id}.")
            if display_name is not None:
                if not _DISPLAY_NAME.match(display_name):
                    raise InvalidRequest("Invalid display name: 1-255 printable characters.")
                row.display_name = display_name
            if active is not None:
                if row.active and not active:  # disabling ends every credential it had
                    self._end_credentials(session, row, sessions_only=False)
                row.active = active
            if password is not None:
                row.password_hash = hash_password(password)
                self._end_credentials(session, row, sessions_only=True)
            if external_id is not None:
                row.external_id = external_id
            self._metastore.bump_version(session)
            session.commit()
            return _record(row)

    def delete(self, principal_id: int, kind: PrincipalKind) -> None:
        with self._metastore.session() as session:
            row = session.get(PrincipalRow, principal_id)
            if row is None or row.kind != kind.value:
                raise NotFound(f"No {kind.value.replace('_', ' ')} with id {principal_id}.")
            if kind is PrincipalKind.GROUP and row.name in BUILTIN_GROUPS:
                raise InvalidRequest(f"The built-in group {row.name!r} cannot be deleted.")
            if session.scalar(select(SecurableRow.id).where(SecurableRow.owner_id == principal_id)):
                raise InvalidRequest(
                    "This principal still owns securables; transfer their ownership first."
                )
            session.execute(
                delete(MembershipRow).where(
                    (MembershipRow.member_id == principal_id)
                    | (MembershipRow.group_id == principal_id)
                )
            )
            session.execute(delete(TokenRow).where(TokenRow.principal_id == principal_id))
            session.execute(delete(GrantRow).where(GrantRow.principal_id == principal_id))
            session.delete(row)
            self._metastore.bump_version(session)
            session.commit()

    def check_password(self, name: str, password: str) -> PrincipalRecord | None:
        with self._metastore.session() as session:
            row = session.scalar(
                select(PrincipalRow).where(
                    PrincipalRow.name == name, PrincipalRow.kind == PrincipalKind.USER.value
                )
            )
            ok = verify_password(row.password_hash if row else None, password)
            return _record(row) if ok and row is not None and row.active else None

    def new_client_secret(self, principal_id: int) -> str:
        secret = new_token(SECRET_PREFIX)
        with self._metastore.session() as session:
            row = session.get(PrincipalRow, principal_id)
            if row is None or row.kind != PrincipalKind.SERVICE_PRINCIPAL.value:
                raise NotFound(f"No service principal with id {principal_id}.")
            row.secret_hash = hash_password(secret)
            self._end_credentials(session, row, sessions_only=True)  # the old secret's logins
            self._metastore.bump_version(session)
            session.commit()
        return secret

    def check_client_secret(self, application_id: str, secret: str) -> PrincipalRecord | None:
        with self._metastore.session() as session:
            row = session.scalar(
                select(PrincipalRow).where(
                    PrincipalRow.name == application_id,
                    PrincipalRow.kind == PrincipalKind.SERVICE_PRINCIPAL.value,
                )
            )
            ok = verify_password(row.secret_hash if row else None, secret)
            return _record(row) if ok and row is not None and row.active else None

    # -- groups -------------------------------------------------------------------------------

    def _group_row(self, session: Session, name: str) -> PrincipalRow | None:
        return session.scalar(
            select(PrincipalRow).where(
                PrincipalRow.name == name, PrincipalRow.kind == PrincipalKind.GROUP.value
            )
        )

    def members(self, group_id: int) -> list[PrincipalRecord]:
        with self._metastore.session() as session:
            rows = session.scalars(
                select(PrincipalRow)
                .join(MembershipRow, MembershipRow.member_id == PrincipalRow.id)
                .where(MembershipRow.group_id == group_id)
                .order_by(PrincipalRow.id)
            )
            return [_record(r) for r in rows]

    def groups_of(self, principal_id: int) -> list[PrincipalRecord]:
        with self._metastore.session() as session:
            rows = session.scalars(
                select(PrincipalRow)
                .join(MembershipRow, MembershipRow.group_id == PrincipalRow.id)
                .where(MembershipRow.member_id == principal_id)
                .order_by(PrincipalRow.id)
            )
            return [_record(r) for r in rows]

    def set_members(
        self, group_id: int, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> None:
        with self._metastore.session() as session:
            group = session.get(PrincipalRow, group_id)
            if group is None or group.kind != PrincipalKind.GROUP.value:
                raise NotFound(f"No group with id {group_id}.")
            for member_id in add:
                if member_id == group_id:
                    raise InvalidRequest("A group cannot be a member of itself.")
                if session.get(PrincipalRow, member_id) is None:
                    raise NotFound(f"No principal with id {member_id}.")
                if session.get(MembershipRow, (group_id, member_id)) is None:
                    session.add(MembershipRow(group_id=group_id, member_id=member_id))
            for member_id in remove:
                session.execute(
                    delete(MembershipRow).where(
                        MembershipRow.group_id == group_id, MembershipRow.member_id == member_id
                    )
                )
            self._metastore.bump_version(session)
            session.commit()

    # -- tokens -------------------------------------------------------------------------------

    def create_token(
        self,
        principal_id: int,
        *,
        kind: str,
        prefix: str,
        lifetime_s: int | None,
        comment: str | None = None,
        scopes: tuple[str, ...] | None = None,
        value: str | None = None,
        parent_id: str | None = None,
        session_id: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> tuple[str, TokenRecord]:
        """Create a credential; the raw value is returned once and only its hash is stored.

        ``parent_id`` is the credential it is created with (a PAT's id or a session's id):
        revoking that one revokes this one too. ``attributes`` are server-set facts the
        credential carries (a caller never chooses them).
        """
        raw = value or new_token(prefix)
        created = now_ms(self._clock)
        row = TokenRow(
            id=new_id(),
            kind=kind,
            principal_id=principal_id,
            token_hash=hash_token(raw),
            comment=comment,
            scopes=json.dumps(list(scopes)) if scopes is not None else None,
            created_at=created,
            expires_at=created + lifetime_s * 1000 if lifetime_s else None,
            parent_id=parent_id,
            session_id=session_id,
            attributes=json.dumps(attributes, sort_keys=True) if attributes else None,
        )
        with self._metastore.session() as session:
            if session.get(PrincipalRow, principal_id) is None:
                raise NotFound(f"No principal with id {principal_id}.")
            session.add(row)
            self._metastore.bump_version(session)
            try:
                session.commit()
            except IntegrityError:
                raise AlreadyExists("That token value is already in use.") from None
            return raw, token_record(row)

    def start_session(
        self, principal_id: int, *, lifetime_s: int, scopes: tuple[str, ...] | None
    ) -> TokenRecord:
        """A login session: the OAuth access and refresh tokens of one login carry its id."""
        _raw, record = self.create_token(
            principal_id, kind="session", prefix="", lifetime_s=lifetime_s, scopes=scopes
        )
        return record

    def extend_session(self, session_id: str, lifetime_s: int) -> None:
        with self._metastore.session() as session:
            row = session.get(TokenRow, session_id)
            if row is not None and row.kind == "session" and row.revoked_at is None:
                row.expires_at = now_ms(self._clock) + lifetime_s * 1000
                session.commit()

    def session_live(self, session_id: str, principal_id: int) -> bool:
        """Whether the login session exists, belongs to the principal and has not ended."""
        with self._metastore.session() as session:
            row = session.get(TokenRow, session_id)
            return (
                row is not None
                and row.kind == "session"
                and row.principal_id == principal_id
                and row.revoked_at is None
                and (row.expires_at is None or row.expires_at > now_ms(self._clock))
            )

    def list_tokens(self, principal_id: int | None, kind: str = "pat") -> list[TokenRecord]:
        with self._metastore.session() as session:
            query = select(TokenRow).where(TokenRow.kind == kind, TokenRow.revoked_at.is_(None))
            if principal_id is not None:
                query = query.where(TokenRow.principal_id == principal_id)
            return [token_record(r) for r in session.scalars(query.order_by(TokenRow.created_at))]

    def find_token(self, raw: str) -> TokenRecord | None:
        with self._metastore.session() as session:
            row = session.scalar(select(TokenRow).where(TokenRow.token_hash == hash_token(raw)))
            return token_record(row) if row else None

    def revoke_token(self, token_id: str, principal_id: int | None) -> None:
        """Revoke a credential and everything created through it (a refresh token ends its
        whole login session)."""
        with self._metastore.session() as session:
            row = session.get(TokenRow, token_id)
            if (
                row is None
                or row.revoked_at is not None
                or (principal_id is not None and row.principal_id != principal_id)
            ):
                raise NotFound(f"No token with id {token_id!r}.")
            roots = [row.session_id] if row.kind == "refresh" and row.session_id else [row.id]
            self._revoke_tree(session, roots)
            self._metastore.bump_version(session)
            session.commit()

    def rotate_refresh_token(self, token_id: str) -> None:
        """Spend a refresh token (its session goes on with the next one)."""
        with self._metastore.session() as session:
            row = session.get(TokenRow, token_id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = now_ms(self._clock)
                self._metastore.bump_version(session)
                session.commit()

    def end_session(self, session_id: str) -> None:
        with self._metastore.session() as session:
            self._revoke_tree(session, [session_id])
            self._metastore.bump_version(session)
            session.commit()

    def _revoke_tree(self, session: Session, roots: list[str]) -> None:
        """Revoke ``roots`` and, transitively, every credential whose parent or session is
        one of them."""
        now = now_ms(self._clock)
        pending, seen = list(roots), set()
        while pending:
            batch = [r for r in pending if r not in seen]
            seen.update(batch)
            if not batch:
                break
            rows = session.scalars(
                select(TokenRow).where(
                    TokenRow.id.in_(batch)
                    | TokenRow.parent_id.in_(batch)
                    | TokenRow.session_id.in_(batch)
                )
            ).all()
            pending = []
            for token in rows:
                if token.revoked_at is None:
                    token.revoked_at = now
                if token.id not in seen:
                    pending.append(token.id)

    def _end_credentials(self, session: Session, row: PrincipalRow, *, sessions_only: bool) -> None:
        """A password change (``sessions_only``) ends every login session of the principal and
        what was created through them; disabling ends every credential it holds."""
        row.sessions_not_before = now_ms(self._clock)
        kinds = ("session", "refresh") if sessions_only else ("session", "refresh", "pat")
        roots = session.scalars(
            select(TokenRow.id).where(
                TokenRow.principal_id == row.id,
                TokenRow.kind.in_(kinds),
                TokenRow.revoked_at.is_(None),
            )
        ).all()
        self._revoke_tree(session, list(roots))
