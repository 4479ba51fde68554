"""SQL store of registered models' versions, aliases and tags.

A registered model is a ``registered_model`` securable (owner, grants, comment), created via
:class:`~bastion.governance.store.GovernanceStore`; this store adds what is specific to models.
Permission checks are the caller's job (routes call ``Authorizer.require`` first).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bastion.clock import Clock, now_ms
from bastion.errors import AlreadyExists, BastionError, Conflict, InvalidRequest, NotFound
from bastion.fields import parse_id
from bastion.governance.securables import SecurableType
from bastion.governance.store import GovernanceStore, SecurableInfo
from bastion.metastore.db import Metastore
from bastion.metastore.models import ModelAliasRow, ModelVersionRow, SecurableRow
from bastion.registry.artifacts import ArtifactKind, ArtifactLimits, import_artifact
from bastion.registry.external import ExternalModel, parse_external_model

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,254}$")
MAX_TAGS = 50


class VersionStatus(StrEnum):
    PENDING_REGISTRATION = "PENDING_REGISTRATION"
    READY = "READY"
    FAILED_REGISTRATION = "FAILED_REGISTRATION"


@dataclass(frozen=True)
class ModelVersion:
    id: int
    model_name: str
    version: int
    status: VersionStatus
    status_message: str | None
    source: str
    artifact_kind: ArtifactKind
    storage_location: str | None
    content_hash: str | None
    run_id: str | None
    comment: str | None
    tags: dict[str, str]
    aliases: tuple[str, ...]
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str
    external_model: ExternalModel | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RegisteredModel:
    info: SecurableInfo
    aliases: dict[str, int]

    @property
    def full_name(self) -> str:
        return self.info.full_name

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.info.properties.get("tags", {}))


def validate_alias(alias: str) -> str:
    text = alias[1:] if alias.startswith("@") else alias
    if not _ALIAS.match(text) or text.isdigit() or not text.isascii():
        raise InvalidRequest(
            f"Invalid alias {alias!r}: use a letter followed by letters, digits, '_' or '-'."
        )
    return text.lower()


def validate_tags(tags: dict[str, str] | None) -> dict[str, str]:
    tags = dict(tags or {})
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"At most {MAX_TAGS} tags are allowed.")
    for key, value in tags.items():
        if not isinstance(key, str) or not key or len(key) > 250:
            raise InvalidRequest(f"Invalid tag key {key!r}: use 1-250 characters.")
        if not isinstance(value, str) or len(value) > 4096:
            raise InvalidRequest(f"Invalid value for tag {key!r}: use a string of ≤ 4096 chars.")
    return tags


class ModelRegistry:
    def __init__(
        self,
        metastore: Metastore,
        governance: GovernanceStore,
        clock: Clock,
        artifacts_dir: Path,
        limits: ArtifactLimits | None = None,
    ) -> None:
        self._metastore = metastore
        self._governance = governance
        self._clock = clock
        self.artifacts_dir = artifacts_dir
        self.limits = limits or ArtifactLimits()

    # -- helpers ------------------------------------------------------------------------------

    def _model_id(self, session: Session, full_name: str) -> int:
        model_id = session.scalar(
            select(SecurableRow.id).where(
                SecurableRow.type == SecurableType.MODEL.value, SecurableRow.full_name == full_name
            )
        )
        if model_id is None:
            raise NotFound(f"Registered model '{full_name}' does not exist.")
        return int(model_id)

    def _aliases_by_version(self, session: Session, model_id: int) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for row in session.scalars(
            select(ModelAliasRow)
            .where(ModelAliasRow.model_id == model_id)
            .order_by(ModelAliasRow.alias)
        ):
            out.setdefault(row.version, []).append(row.alias)
        return out

    def _version(self, full_name: str, row: ModelVersionRow, aliases: list[str]) -> ModelVersion:
        config = json.loads(row.artifact_config) if row.artifact_config else None
        return ModelVersion(
            id=row.id,
            model_name=full_name,
            version=row.version,
            status=VersionStatus(row.status),
            status_message=row.status_message,
            source=row.source,
            artifact_kind=ArtifactKind(row.artifact_kind),
            storage_location=row.storage_location,
            content_hash=row.content_hash,
            run_id=row.run_id,
            comment=row.comment,
            tags=json.loads(row.tags) if row.tags else {},
            aliases=tuple(aliases),
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
            external_model=parse_external_model(config) if config else None,
        )

    def _version_row(self, session: Session, model_id: int, version: int) -> ModelVersionRow:
        row = session.scalar(
            select(ModelVersionRow).where(
                ModelVersionRow.model_id == model_id, ModelVersionRow.version == version
            )
        )
        if row is None:
            raise NotFound(f"Version {version} of the model does not exist.")
        return row

    def version_dir(self, full_name: str, version: int) -> Path:
        return self.artifacts_dir.joinpath(*full_name.split("."), str(version))

    # -- models -------------------------------------------------------------------------------

    def create_model(
        self,
        full_name: str,
        *,
        owner_id: int,
        created_by: str,
        comment: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> RegisteredModel:
        tags = validate_tags(tags)
        exists = AlreadyExists(f"Registered model '{full_name}' already exists.")
        with self._metastore.session() as session:
            try:
                self._model_id(session, full_name)
                raise exists
            except NotFound:
                pass
        try:
            info = self._governance.create(
                SecurableType.MODEL,
                full_name,
                owner_id=owner_id,
                created_by=created_by,
                comment=comment,
                properties={"tags": tags} if tags else None,
            )
        except IntegrityError:  # a concurrent create of the same name
            raise exists from None
        return RegisteredModel(info, {})

    def get_model(self, full_name: str) -> RegisteredModel:
        info = self._governance.get(SecurableType.MODEL, full_name)
        return RegisteredModel(info, self.aliases(full_name))

    def list_models(self, schema: str) -> list[RegisteredModel]:
        return [
            RegisteredModel(info, self.aliases(info.full_name))
            for info in self._governance.list_securables(SecurableType.MODEL, schema)
        ]

    def set_model_tags(
        self, full_name: str, updated_by: str, set_tags: dict[str, str], delete_tags: list[str]
    ) -> RegisteredModel:
        current = self.get_model(full_name).tags
        current.update(validate_tags(set_tags))
        for key in delete_tags:
            current.pop(key, None)
        validate_tags(current)
        self._governance.update(
            SecurableType.MODEL, full_name, updated_by=updated_by, properties={"tags": current}
        )
        return self.get_model(full_name)

    def delete_model(self, full_name: str) -> None:
        self._governance.delete(SecurableType.MODEL, full_name, force=True)
        shutil.rmtree(self.artifacts_dir.joinpath(*full_name.split(".")), ignore_errors=True)

    # -- versions -----------------------------------------------------------------------------

    def create_version(
        self,
        full_name: str,
        *,
        created_by: str,
        source: Path | None = None,
        source_label: str | None = None,
        external_model: dict[str, Any] | None = None,
        comment: str | None = None,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> ModelVersion:
        """Register the next version: PENDING_REGISTRATION, then READY or FAILED_REGISTRATION.

        ``source`` is a GGUF file or an MLflow model directory, *already authorized* (callers
        resolve what a user gave with :func:`bastion.staging.resolve_source`), copied under
        the artifacts directory; ``source_label`` is what the version shows as its source
        (default: the path). Or ``external_model`` is a Databricks-shaped external model
        config whose key is a secret reference.
        """
        tags = validate_tags(tags)
        external: ExternalModel | None = None
        if (source is None) == (external_model is None):
            raise InvalidRequest("Give exactly one of 'source' and 'external_model'.")
        if external_model is not None:
            external = parse_external_model(external_model)
            source_text = f"external:{external.provider}/{external.name}"
            kind = ArtifactKind.EXTERNAL_MODEL
        else:
            assert source is not None
            path = source
            source_text = source_label or str(path)
            kind = ArtifactKind.GGUF if path.is_file() else ArtifactKind.MLFLOW_MODEL
        now = now_ms(self._clock)
        with self._metastore.session() as session:
            model_id = self._model_id(session, full_name)
            for _attempt in range(3):
                number = (
                    session.scalar(
                        select(func.max(ModelVersionRow.version)).where(
                            ModelVersionRow.model_id == model_id
                        )
                    )
                    or 0
                ) + 1
                row = ModelVersionRow(
                    model_id=model_id,
                    version=number,
                    status=VersionStatus.PENDING_REGISTRATION.value,
                    source=source_text,
                    artifact_kind=kind.value,
                    comment=comment,
                    run_id=run_id,
                    tags=json.dumps(tags) if tags else None,
                    created_at=now,
                    created_by=created_by,
                    updated_at=now,
                    updated_by=created_by,
                )
                session.add(row)
                try:
                    session.commit()
                    break
                except IntegrityError:  # a concurrent registration took the number
                    session.rollback()
            else:
                raise Conflict("Could not allocate a version number; try again.")
            version_id = row.id
        status, message, location, digest, config = self._materialize(
            full_name, number, kind, path if external is None else None, external
        )
        with self._metastore.session() as session:
            done = session.get(ModelVersionRow, version_id)
            assert done is not None
            row = done
            row.status = status.value
            row.status_message = message
            row.storage_location = location
            row.content_hash = digest
            row.artifact_config = config
            self._metastore.bump_version(session)
            session.commit()
        return self.get_version(full_name, number)

    def _materialize(
        self,
        full_name: str,
        number: int,
        kind: ArtifactKind,
        source: Path | None,
        external: ExternalModel | None,
    ) -> tuple[VersionStatus, str | None, str | None, str | None, str | None]:
        if external is not None:
            config = json.dumps(external.as_config(), sort_keys=True)
            digest = "sha256:" + hashlib.sha256(config.encode()).hexdigest()
            return VersionStatus.READY, None, None, digest, config
        assert source is not None
        try:
            _found, location, digest = import_artifact(
                source, self.version_dir(full_name, number), self.limits
            )
        except (BastionError, OSError) as exc:
            message = exc.message if isinstance(exc, BastionError) else str(exc)
            shutil.rmtree(self.version_dir(full_name, number), ignore_errors=True)
            return VersionStatus.FAILED_REGISTRATION, message, None, None, None
        return VersionStatus.READY, None, str(location), digest, None

    def get_version(self, full_name: str, version: int) -> ModelVersion:
        with self._metastore.session() as session:
            model_id = self._model_id(session, full_name)
            row = self._version_row(session, model_id, version)
            aliases = self._aliases_by_version(session, model_id).get(version, [])
            return self._version(full_name, row, aliases)

    def list_versions(self, full_name: str) -> list[ModelVersion]:
        with self._metastore.session() as session:
            model_id = self._model_id(session, full_name)
            aliases = self._aliases_by_version(session, model_id)
            rows = session.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.model_id == model_id)
                .order_by(ModelVersionRow.version.desc())
            ).all()
            return [self._version(full_name, r, aliases.get(r.version, [])) for r in rows]

    def resolve(self, full_name: str, version_or_alias: str | int) -> ModelVersion:
        """``3``, ``"3"``, ``"@champion"`` or ``"champion"`` → that model version."""
        text = str(version_or_alias).strip()
        number = parse_id(text)
        if number is not None:
            return self.get_version(full_name, number)
        if text.isdigit():  # digits, but not a version number this registry can hold
            raise NotFound(f"Model '{full_name}' has no version {text[:32]!r}.")
        alias = validate_alias(text)
        version = self.aliases(full_name).get(alias)
        if version is None:
            raise NotFound(f"Model '{full_name}' has no alias '@{alias}'.")
        return self.get_version(full_name, version)

    def update_version(
        self,
        full_name: str,
        version: int,
        *,
        updated_by: str,
        comment: str | None = None,
        set_tags: dict[str, str] | None = None,
        delete_tags: list[str] | None = None,
    ) -> ModelVersion:
        """Only metadata changes; the artifact, source and hash of a version are immutable."""
        with self._metastore.session() as session:
            model_id = self._model_id(session, full_name)
            row = self._version_row(session, model_id, version)
            if comment is not None:
                row.comment = comment
            if set_tags or delete_tags:
                tags = json.loads(row.tags) if row.tags else {}
                tags.update(validate_tags(set_tags))
                for key in delete_tags or ():
                    tags.pop(key, None)
                row.tags = json.dumps(validate_tags(tags)) if tags else None
            row.updated_at = now_ms(self._clock)
            row.updated_by = updated_by
            self._metastore.bump_version(session)
            session.commit()
        return self.get_version(full_name, version)

    def delete_version(self, full_name: str, version: int) -> None:
        with self._metastore.session() as session:
            model_id = self._model_id(session, full_name)
            row = self._version_row(session, model_id, version)
            session.execute(
                delete(ModelAliasRow).where(
                    ModelAliasRow.model_id == model_id, ModelAliasRow.version == version
                )
            )
            session.delete(row)
            self._metastore.bump_version(session)
            session.commit()
        shutil.rmtree(self.version_dir(full_name, version), ignore_errors=True)

    # -- aliases ------------------------------------------------------------------------------

    def aliases(self, full_name: str) -> dict[str, int]:
        with self._metastore.session() as session:
            model_id = self._model_id(session, full_name)
            return {
                row.alias: row.version
                for row in session.scalars(
                    select(ModelAliasRow)
                    .where(ModelAliasRow.model_id == model_id)
                    .order_by(ModelAliasRow.alias)
                )
            }

    def set_alias(self, full_name: str, alias: str, version: int) -> ModelVersion:
        alias = validate_alias(alias)
        with self._metastore.session() as session:
            model_id = self._model_id(session, full_name)
            self._version_row(session, model_id, version)
            existing = session.get(ModelAliasRow, (model_id, alias))
            if existing is None:
                session.add(ModelAliasRow(model_id=model_id, alias=alias, version=version))
            else:
                existing.version = version
            self._metastore.bump_version(session)
            session.commit()
        return self.get_version(full_name, version)

    def delete_alias(self, full_name: str, alias: str) -> None:
        alias = validate_alias(alias)
        with self._metastore.session() as session:
            model_id = self._model_id(session, full_name)
            existing = session.get(ModelAliasRow, (model_id, alias))
            if existing is None:
                raise NotFound(f"Model '{full_name}' has no alias '@{alias}'.")
            session.delete(existing)
            self._metastore.bump_version(session)
            session.commit()
