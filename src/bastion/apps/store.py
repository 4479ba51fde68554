"""SQL store of apps (one row per ``app`` securable) and their deployments."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.apps.model import (
    AppRecord,
    AppResource,
    DeploymentRecord,
    DeploymentState,
    parse_resources,
)
from bastion.clock import Clock, now_ms
from bastion.errors import AlreadyExists, NotFound
from bastion.governance.securables import SecurableType
from bastion.governance.store import GovernanceStore
from bastion.metastore.db import Metastore
from bastion.metastore.models import AppDeploymentRow, AppRow

_UNSET = object()


def _record(row: AppRow) -> AppRecord:
    return AppRecord(
        id=row.id,
        securable_id=row.securable_id,
        name=row.name,
        description=row.description,
        service_principal_id=row.service_principal_id,
        user_api_scopes=tuple(json.loads(row.user_api_scopes)) if row.user_api_scopes else (),
        resources=tuple(parse_resources(json.loads(row.resources) if row.resources else [])),
        resources_set_by=row.resources_set_by,
        compute_desired=row.compute_desired,
        active_deployment_id=row.active_deployment_id,
        creator=row.creator,
        updater=row.updater,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _deployment(row: AppDeploymentRow) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id,
        app_id=row.app_id,
        source_code_path=row.source_code_path,
        mode=row.mode,
        state=DeploymentState(row.state),
        message=row.message,
        command=tuple(json.loads(row.command)) if row.command else (),
        env=tuple(json.loads(row.env)) if row.env else (),
        creator=row.creator,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _dump_resources(resources: Sequence[AppResource]) -> str | None:
    return json.dumps([r.model_dump(exclude_none=True) for r in resources]) if resources else None


class AppStore:
    def __init__(self, metastore: Metastore, governance: GovernanceStore, clock: Clock) -> None:
        self._metastore = metastore
        self._governance = governance
        self._clock = clock

    def _row(self, session: Session, name: str) -> AppRow:
        row = session.scalar(select(AppRow).where(AppRow.name == name))
        if row is None:
            raise NotFound(f"App '{name}' does not exist.")
        return row

    # -- apps ---------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        description: str | None,
        user_api_scopes: tuple[str, ...],
        resources: Sequence[AppResource],
        service_principal_id: int,
        owner_id: int,
        creator: str,
    ) -> AppRecord:
        with self._metastore.session() as session:
            if session.scalar(select(AppRow.id).where(AppRow.name == name)):
                raise AlreadyExists(f"App '{name}' already exists.")
        info = self._governance.create(
            SecurableType.APP, name, owner_id=owner_id, created_by=creator
        )
        now = now_ms(self._clock)
        with self._metastore.session() as session:
            row = AppRow(
                securable_id=info.id,
                name=name,
                description=description,
                service_principal_id=service_principal_id,
                user_api_scopes=json.dumps(list(user_api_scopes)) if user_api_scopes else None,
                resources=_dump_resources(resources),
                resources_set_by=owner_id,
                compute_desired="STOPPED",
                creator=creator,
                updater=creator,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            self._metastore.bump_version(session)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                self._governance.delete(SecurableType.APP, name, force=True)
                raise AlreadyExists(f"App '{name}' already exists.") from None
            return _record(row)

    def get(self, name: str) -> AppRecord:
        with self._metastore.session() as session:
            return _record(self._row(session, name))

    def all(self) -> list[AppRecord]:
        with self._metastore.session() as session:
            return [_record(r) for r in session.scalars(select(AppRow).order_by(AppRow.name))]

    def update(
        self,
        name: str,
        *,
        updater: str,
        description: str | object | None = _UNSET,
        user_api_scopes: tuple[str, ...] | None = None,
        resources: Sequence[AppResource] | None = None,
        resources_set_by: int | None = None,
        compute_desired: str | None = None,
        active_deployment_id: str | None = None,
    ) -> AppRecord:
        with self._metastore.session() as session:
            row = self._row(session, name)
            if description is not _UNSET:
                row.description = description  # type: ignore[assignment]
            if user_api_scopes is not None:
                row.user_api_scopes = json.dumps(list(user_api_scopes)) if user_api_scopes else None
            if resources is not None:
                row.resources = _dump_resources(resources)
                row.resources_set_by = resources_set_by
            if compute_desired is not None:
                row.compute_desired = compute_desired
            if active_deployment_id is not None:
                row.active_deployment_id = active_deployment_id
            row.updater = updater
            row.updated_at = now_ms(self._clock)
            self._metastore.bump_version(session)
            session.commit()
            return _record(row)

    def delete(self, name: str) -> None:
        self.get(name)
        self._governance.delete(SecurableType.APP, name, force=True)  # cascades to the rows

    # -- deployments --------------------------------------------------------------------------

    def add_deployment(
        self,
        app: AppRecord,
        *,
        deployment_id: str,
        source_code_path: str,
        mode: str,
        command: tuple[str, ...],
        env: tuple[dict[str, str], ...],
        creator: str,
    ) -> DeploymentRecord:
        now = now_ms(self._clock)
        row = AppDeploymentRow(
            id=deployment_id,
            app_id=app.id,
            source_code_path=source_code_path,
            mode=mode,
            state=DeploymentState.IN_PROGRESS.value,
            command=json.dumps(list(command)),
            env=json.dumps(list(env)) if env else None,
            creator=creator,
            created_at=now,
            updated_at=now,
        )
        with self._metastore.session() as session:
            session.add(row)
            session.commit()
            return _deployment(row)

    def finish_deployment(
        self, deployment_id: str, state: DeploymentState, message: str | None
    ) -> DeploymentRecord:
        with self._metastore.session() as session:
            row = session.get(AppDeploymentRow, deployment_id)
            if row is None:
                raise NotFound(f"Deployment '{deployment_id}' does not exist.")
            row.state = state.value
            row.message = message
            row.updated_at = now_ms(self._clock)
            session.commit()
            return _deployment(row)

    def deployment(self, app: AppRecord, deployment_id: str) -> DeploymentRecord:
        with self._metastore.session() as session:
            row = session.get(AppDeploymentRow, deployment_id)
            if row is None or row.app_id != app.id:
                raise NotFound(f"App '{app.name}' has no deployment '{deployment_id}'.")
            return _deployment(row)

    def deployments(self, app: AppRecord) -> list[DeploymentRecord]:
        with self._metastore.session() as session:
            rows = session.scalars(
                select(AppDeploymentRow)
                .where(AppDeploymentRow.app_id == app.id)
                .order_by(AppDeploymentRow.created_at.desc())
            )
            return [_deployment(r) for r in rows]

    def abandon_in_progress(self) -> None:
        """Deployments a previous server was building when it stopped: they never finished."""
        with self._metastore.session() as session:
            for row in session.scalars(
                select(AppDeploymentRow).where(
                    AppDeploymentRow.state == DeploymentState.IN_PROGRESS.value
                )
            ):
                row.state = DeploymentState.FAILED.value
                row.message = "The server stopped before this deployment finished; deploy again."
            session.commit()
