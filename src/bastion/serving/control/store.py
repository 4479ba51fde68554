"""SQL store of serving endpoint configurations (one row per ``serving_endpoint`` securable)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.clock import Clock, now_ms
from bastion.errors import AlreadyExists, NotFound
from bastion.fields import parse_id
from bastion.governance.securables import SecurableType
from bastion.governance.store import GovernanceStore
from bastion.metastore.db import Metastore
from bastion.metastore.models import ServingEndpointRow


@dataclass(frozen=True)
class EndpointRecord:
    id: int
    securable_id: int
    name: str
    description: str | None
    config: dict[str, Any]
    config_version: int
    ai_gateway: dict[str, Any]
    tags: dict[str, str]
    creator: str
    created_at: int
    updated_at: int
    config_updated_by: int | None = None


def _record(row: ServingEndpointRow) -> EndpointRecord:
    return EndpointRecord(
        id=row.id,
        securable_id=row.securable_id,
        name=row.name,
        description=row.description,
        config=json.loads(row.config),
        config_version=row.config_version,
        ai_gateway=json.loads(row.ai_gateway) if row.ai_gateway else {},
        tags=json.loads(row.tags) if row.tags else {},
        creator=row.creator,
        created_at=row.created_at,
        updated_at=row.updated_at,
        config_updated_by=row.config_updated_by,
    )


class EndpointStore:
    def __init__(self, metastore: Metastore, governance: GovernanceStore, clock: Clock) -> None:
        self._metastore = metastore
        self._governance = governance
        self._clock = clock

    def _row(self, session: Session, name: str) -> ServingEndpointRow:
        row = session.scalar(select(ServingEndpointRow).where(ServingEndpointRow.name == name))
        if row is None:
            raise NotFound(f"Serving endpoint '{name}' does not exist.")
        return row

    def create(
        self,
        name: str,
        *,
        config: dict[str, Any],
        ai_gateway: dict[str, Any],
        tags: dict[str, str],
        description: str | None,
        owner_id: int,
        creator: str,
    ) -> EndpointRecord:
        with self._metastore.session() as session:
            if session.scalar(select(ServingEndpointRow.id).where(ServingEndpointRow.name == name)):
                raise AlreadyExists(f"Serving endpoint '{name}' already exists.")
        try:
            info = self._governance.create(
                SecurableType.SERVING_ENDPOINT, name, owner_id=owner_id, created_by=creator
            )
        except IntegrityError:  # a concurrent create of the same name
            raise AlreadyExists(f"Serving endpoint '{name}' already exists.") from None
        now = now_ms(self._clock)
        with self._metastore.session() as session:
            row = ServingEndpointRow(
                securable_id=info.id,
                name=name,
                description=description,
                config=json.dumps(config),
                config_version=1,
                ai_gateway=json.dumps(ai_gateway) if ai_gateway else None,
                tags=json.dumps(tags) if tags else None,
                creator=creator,
                created_at=now,
                updated_at=now,
                config_updated_by=owner_id,
            )
            session.add(row)
            self._metastore.bump_version(session)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                self._governance.delete(SecurableType.SERVING_ENDPOINT, name, force=True)
                raise AlreadyExists(f"Serving endpoint '{name}' already exists.") from None
            return _record(row)

    def get(self, name: str) -> EndpointRecord:
        with self._metastore.session() as session:
            return _record(self._row(session, name))

    def find(self, name_or_id: str) -> EndpointRecord:
        """By name, or by the numeric id the permissions API may use."""
        with self._metastore.session() as session:
            row = session.scalar(
                select(ServingEndpointRow).where(ServingEndpointRow.name == name_or_id)
            )
            number = parse_id(name_or_id)
            if row is None and number is not None:
                row = session.get(ServingEndpointRow, number)
            if row is None:
                raise NotFound(f"Serving endpoint '{name_or_id}' does not exist.")
            return _record(row)

    def all(self) -> list[EndpointRecord]:
        with self._metastore.session() as session:
            rows = session.scalars(select(ServingEndpointRow).order_by(ServingEndpointRow.name))
            return [_record(r) for r in rows]

    def update(
        self,
        name: str,
        *,
        config: dict[str, Any] | None = None,
        ai_gateway: dict[str, Any] | None = None,
        set_tags: dict[str, str] | None = None,
        delete_tags: list[str] | None = None,
        description: str | None = None,
        updated_by: int | None = None,
    ) -> EndpointRecord:
        """``updated_by`` (a principal id) is recorded with a new ``config``: whoever writes
        the config answers for the secrets it references."""
        with self._metastore.session() as session:
            row = self._row(session, name)
            if config is not None:
                row.config = json.dumps(config)
                row.config_version += 1
                if updated_by is not None:
                    row.config_updated_by = updated_by
            if ai_gateway is not None:
                row.ai_gateway = json.dumps(ai_gateway) if ai_gateway else None
            if set_tags or delete_tags:
                tags: dict[str, str] = json.loads(row.tags) if row.tags else {}
                tags.update(set_tags or {})
                for key in delete_tags or ():
                    tags.pop(key, None)
                row.tags = json.dumps(tags) if tags else None
            if description is not None:
                row.description = description
            row.updated_at = now_ms(self._clock)
            self._metastore.bump_version(session)
            session.commit()
            return _record(row)

    def delete(self, name: str) -> None:
        self.get(name)
        self._governance.delete(SecurableType.SERVING_ENDPOINT, name, force=True)
