"""Deployment state on the server: one record per bundle and target, shared by everyone who
deploys it, guarded by a lease lock (so two deploys of one target never interleave) and
optimistic versions (so a stale writer cannot overwrite a newer state)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.clock import Clock, now_ms
from bastion.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from bastion.identity.model import Caller
from bastion.metastore.db import Metastore
from bastion.metastore.models import BundleDeploymentRow

MAX_STATE_BYTES = 4 * 1024 * 1024
MAX_LOCK_S = 3600


@dataclass(frozen=True)
class Deployment:
    bundle_name: str
    target_key: str
    state: dict[str, Any]
    version: int
    lock_principal: str | None
    lock_expires_at: int | None
    updated_at: int
    updated_by: str


class DeploymentStore:
    def __init__(self, metastore: Metastore, clock: Clock) -> None:
        self._metastore = metastore
        self._clock = clock

    def _row(self, session: Session, bundle: str, target: str) -> BundleDeploymentRow | None:
        return session.scalar(
            select(BundleDeploymentRow).where(
                BundleDeploymentRow.bundle_name == bundle, BundleDeploymentRow.target_key == target
            )
        )

    @staticmethod
    def _may(caller: Caller, row: BundleDeploymentRow) -> bool:
        """Admins, whoever first deployed it, and the bundle's CAN_MANAGE principals."""
        if caller.is_admin or caller.principal_id == row.owner_id:
            return True
        managers = set(json.loads(row.state).get("managers") or [])
        return bool(managers & ({caller.name} | set(caller.groups)))

    def _visible(
        self, session: Session, caller: Caller, bundle: str, target: str
    ) -> BundleDeploymentRow | None:
        row = self._row(session, bundle, target)
        if row is not None and not self._may(caller, row):
            raise PermissionDenied(
                f"User {caller.name} may not deploy bundle '{bundle}' to '{target}': it is "
                "managed by its first deployer and the bundle's CAN_MANAGE permissions."
            )
        return row

    @staticmethod
    def _out(row: BundleDeploymentRow) -> Deployment:
        return Deployment(
            row.bundle_name,
            row.target_key,
            json.loads(row.state),
            row.version,
            row.lock_principal,
            row.lock_expires_at,
            row.updated_at,
            row.updated_by,
        )

    def get(self, caller: Caller, bundle: str, target: str) -> Deployment | None:
        with self._metastore.session() as session:
            row = self._visible(session, caller, bundle, target)
            return self._out(row) if row is not None else None

    def lock(self, caller: Caller, bundle: str, target: str, holder: str, ttl_s: int) -> Deployment:
        """Take (or renew) the lease; the record is created empty on a first deploy."""
        if not 1 <= ttl_s <= MAX_LOCK_S:
            raise InvalidRequest(f"ttl_s must be 1 to {MAX_LOCK_S}.")
        now = now_ms(self._clock)
        with self._metastore.session() as session:
            row = self._visible(session, caller, bundle, target)
            if row is None:
                row = BundleDeploymentRow(
                    bundle_name=bundle,
                    target_key=target,
                    owner_id=caller.principal_id,
                    state=json.dumps({"resources": {}}),
                    version=0,
                    updated_at=now,
                    updated_by=caller.name,
                )
                session.add(row)
            elif (
                row.lock_holder not in (None, holder)
                and row.lock_expires_at is not None
                and row.lock_expires_at > now
            ):
                raise Conflict(
                    f"Bundle '{bundle}' target '{target}' is being deployed by "
                    f"{row.lock_principal} (lock held for another "
                    f"{(row.lock_expires_at - now) // 1000} s); try again later."
                )
            row.lock_holder, row.lock_principal = holder, caller.name
            row.lock_expires_at = now + ttl_s * 1000
            try:
                session.commit()
            except IntegrityError:  # a concurrent first deploy created it: it holds the lock
                raise Conflict(f"Bundle '{bundle}' target '{target}' is being deployed.") from None
            return self._out(row)

    def unlock(self, caller: Caller, bundle: str, target: str, holder: str) -> None:
        with self._metastore.session() as session:
            row = self._visible(session, caller, bundle, target)
            if row is not None and row.lock_holder == holder:
                row.lock_holder = row.lock_principal = None
                row.lock_expires_at = None
                session.commit()

    def save(
        self,
        caller: Caller,
        bundle: str,
        target: str,
        *,
        holder: str,
        version: int,
        state: dict[str, Any],
    ) -> Deployment:
        """Replace the state, holding the lock, if nobody saved since ``version``."""
        text = json.dumps(state)
        if len(text) > MAX_STATE_BYTES:
            raise InvalidRequest(f"A deployment state may hold at most {MAX_STATE_BYTES} bytes.")
        now = now_ms(self._clock)
        with self._metastore.session() as session:
            row = self._visible(session, caller, bundle, target)
            if row is None:
                raise NotFound(f"Bundle '{bundle}' has no deployment to '{target}'; lock it first.")
            if row.lock_holder != holder or (row.lock_expires_at or 0) <= now:
                raise Conflict("The deployment lock is not held (it expired?); deploy again.")
            if row.version != version:
                raise Conflict(
                    f"The deployment state changed since version {version} (now {row.version}); "
                    "deploy again to plan from the current state."
                )
            row.state, row.version = text, row.version + 1
            row.updated_at, row.updated_by = now, caller.name
            session.commit()
            return self._out(row)

    def delete(self, caller: Caller, bundle: str, target: str, holder: str) -> None:
        with self._metastore.session() as session:
            row = self._visible(session, caller, bundle, target)
            if row is None:
                return
            if row.lock_holder != holder:
                raise Conflict("Hold the deployment lock to forget a deployment.")
            session.delete(row)
            session.commit()
