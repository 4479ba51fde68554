"""SQL store of securables and the grants on them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.clock import Clock, now_ms
from bastion.errors import AlreadyExists, InvalidRequest, NotFound
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parent_name
from bastion.metastore.db import Metastore
from bastion.metastore.models import GrantRow, PrincipalRow, SecurableRow


@dataclass(frozen=True)
class SecurableInfo:
    id: int
    type: SecurableType
    full_name: str
    parent_id: int | None
    owner_id: int
    owner: str
    comment: str | None
    properties: dict[str, Any]
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class GrantChange:
    principal_id: int
    add: tuple[Privilege, ...] = ()
    remove: tuple[Privilege, ...] = ()


def _info(row: SecurableRow, owner: str) -> SecurableInfo:
    return SecurableInfo(
        id=row.id,
        type=SecurableType(row.type),
        full_name=row.full_name,
        parent_id=row.parent_id,
        owner_id=row.owner_id,
        owner=owner,
        comment=row.comment,
        properties=json.loads(row.properties) if row.properties else {},
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


class GovernanceStore:
    def __init__(self, metastore: Metastore, clock: Clock) -> None:
        self._metastore = metastore
        self._clock = clock

    def _row(self, session: Session, type_: SecurableType, full_name: str) -> SecurableRow:
        row = session.scalar(
            select(SecurableRow).where(
                SecurableRow.type == type_.value, SecurableRow.full_name == full_name
            )
        )
        if row is None:
            raise NotFound(f"{type_.label.capitalize()} '{full_name}' does not exist.")
        return row

    def _owner_name(self, session: Session, owner_id: int) -> str:
        return session.scalar(select(PrincipalRow.name).where(PrincipalRow.id == owner_id)) or ""

    def create(
        self,
        type_: SecurableType,
        full_name: str,
        *,
        owner_id: int,
        created_by: str,
        comment: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> SecurableInfo:
        now = now_ms(self._clock)
        with self._metastore.session() as session:
            parent = parent_name(type_, full_name)
            parent_id = self._row(session, *parent).id if parent else None
            row = SecurableRow(
                type=type_.value,
                full_name=full_name,
                parent_id=parent_id,
                owner_id=owner_id,
                comment=comment,
                properties=json.dumps(properties) if properties else None,
                created_at=now,
                created_by=created_by,
                updated_at=now,
                updated_by=created_by,
            )
            session.add(row)
            try:
                session.flush()
                self._metastore.bump_version(session)
                session.commit()
            except IntegrityError:
                session.rollback()
                raise AlreadyExists(
                    f"{type_.label.capitalize()} '{full_name}' already exists."
                ) from None
            return _info(row, self._owner_name(session, owner_id))

    def get(self, type_: SecurableType, full_name: str) -> SecurableInfo:
        with self._metastore.session() as session:
            row = self._row(session, type_, full_name)
            return _info(row, self._owner_name(session, row.owner_id))

    def list_securables(
        self, type_: SecurableType, parent: str | None = None
    ) -> list[SecurableInfo]:
        with self._metastore.session() as session:
            query = select(SecurableRow, PrincipalRow.name).join(
                PrincipalRow, PrincipalRow.id == SecurableRow.owner_id
            )
            query = query.where(SecurableRow.type == type_.value)
            if parent is not None:
                parent_ref = parent_name(type_, f"{parent}.x")
                assert parent_ref is not None
                query = query.where(SecurableRow.parent_id == self._row(session, *parent_ref).id)
            rows = session.execute(query.order_by(SecurableRow.full_name)).all()
            return [_info(row, owner) for row, owner in rows]

    def update(
        self,
        type_: SecurableType,
        full_name: str,
        *,
        updated_by: str,
        comment: str | None = None,
        owner_id: int | None = None,
        properties: dict[str, Any] | None = None,
    ) -> SecurableInfo:
        with self._metastore.session() as session:
            row = self._row(session, type_, full_name)
            if comment is not None:
                row.comment = comment
            if owner_id is not None:
                row.owner_id = owner_id
            if properties is not None:
                merged = json.loads(row.properties) if row.properties else {}
                merged.update(properties)
                row.properties = json.dumps(merged)
            row.updated_at = now_ms(self._clock)
            row.updated_by = updated_by
            self._metastore.bump_version(session)
            session.commit()
            return _info(row, self._owner_name(session, row.owner_id))

    def delete(self, type_: SecurableType, full_name: str, *, force: bool = False) -> None:
        with self._metastore.session() as session:
            row = self._row(session, type_, full_name)
            children = session.scalar(
                select(func.count())
                .select_from(SecurableRow)
                .where(SecurableRow.parent_id == row.id)
            )
            if children and not force:
                raise InvalidRequest(
                    f"{type_.label.capitalize()} '{full_name}' is not empty; "
                    "delete its contents first or pass force=true."
                )
            self._delete_tree(session, row.id)
            self._metastore.bump_version(session)
            session.commit()

    def _delete_tree(self, session: Session, securable_id: int) -> None:
        for (child_id,) in session.execute(
            select(SecurableRow.id).where(SecurableRow.parent_id == securable_id)
        ).all():
            self._delete_tree(session, child_id)
        session.execute(delete(GrantRow).where(GrantRow.securable_id == securable_id))
        session.execute(delete(SecurableRow).where(SecurableRow.id == securable_id))

    def grants(self, securable_id: int) -> dict[str, list[Privilege]]:
        with self._metastore.session() as session:
            rows = session.execute(
                select(PrincipalRow.name, GrantRow.privilege)
                .join(PrincipalRow, PrincipalRow.id == GrantRow.principal_id)
                .where(GrantRow.securable_id == securable_id)
                .order_by(PrincipalRow.name, GrantRow.privilege)
            ).all()
        out: dict[str, list[Privilege]] = {}
        for name, privilege in rows:
            out.setdefault(name, []).append(Privilege(privilege))
        return out

    def update_grants(self, securable_id: int, changes: Sequence[GrantChange]) -> None:
        with self._metastore.session() as session:
            for change in changes:
                for privilege in change.add:
                    key = (securable_id, change.principal_id, privilege.value)
                    if session.get(GrantRow, key) is None:
                        session.add(
                            GrantRow(
                                securable_id=securable_id,
                                principal_id=change.principal_id,
                                privilege=privilege.value,
                            )
                        )
                for privilege in change.remove:
                    session.execute(
                        delete(GrantRow).where(
                            GrantRow.securable_id == securable_id,
                            GrantRow.principal_id == change.principal_id,
                            GrantRow.privilege == privilege.value,
                        )
                    )
                session.flush()
            self._metastore.bump_version(session)
            session.commit()

    def replace_grants(self, securable_id: int, grants: dict[int, set[Privilege]]) -> None:
        """Set the full grant list of a securable (used by Databricks-style PUT permissions)."""
        with self._metastore.session() as session:
            session.execute(delete(GrantRow).where(GrantRow.securable_id == securable_id))
            for principal_id, privileges in grants.items():
                for privilege in privileges:
                    session.add(
                        GrantRow(
                            securable_id=securable_id,
                            principal_id=principal_id,
                            privilege=privilege.value,
                        )
                    )
            self._metastore.bump_version(session)
            session.commit()
