"""Unity Catalog tables: ``/api/2.1/unity-catalog/tables``; managed tables are Delta tables."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parse_name, validate_part
from bastion.governance.store import SecurableInfo
from bastion.identity.model import Caller
from bastion.server.auth import authenticated, platform_of
from bastion.server.routes.catalogs import METASTORE_ID, delete_securable
from bastion.tables.columns import Column, arrow_schema, parse_column
from bastion.tables.delta import create_table_if_missing
from bastion.tables.storage import reachable

router = APIRouter(prefix="/api/2.1/unity-catalog", tags=["unityCatalog"])


class CreateTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    catalog_name: str
    schema_name: str
    table_type: str = "MANAGED"
    data_source_format: str = "DELTA"
    columns: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    comment: str | None = Field(default=None, max_length=10_000)
    properties: dict[str, str] | None = None
    storage_location: str | None = None


def table_info(info: SecurableInfo) -> dict[str, Any]:
    catalog, schema, name = info.full_name.split(".")
    props = info.properties
    return {
        "name": name,
        "catalog_name": catalog,
        "schema_name": schema,
        "full_name": info.full_name,
        "table_type": props.get("table_type", "MANAGED"),
        "data_source_format": props.get("data_source_format", "DELTA"),
        "columns": props.get("columns", []),
        "storage_location": props.get("storage_location"),
        "view_definition": props.get("view_definition"),
        "comment": info.comment,
        "owner": info.owner,
        "properties": props.get("user_properties", {}),
        "metastore_id": METASTORE_ID,
        "created_at": info.created_at,
        "created_by": info.created_by,
        "updated_at": info.updated_at,
        "updated_by": info.updated_by,
        "table_id": str(info.id),
    }


@router.post("/tables", name="create_table")
def create_table(
    request: Request, body: CreateTable, caller: Caller = Depends(authenticated("catalog.tables"))
) -> dict[str, Any]:
    platform = platform_of(request)
    if body.table_type.upper() != "MANAGED" or body.data_source_format.upper() != "DELTA":
        raise InvalidRequest("Only MANAGED tables in DELTA format can be created here.")
    if body.storage_location is not None:
        raise InvalidRequest("Managed tables choose their own storage_location.")
    catalog = validate_part(body.catalog_name, "catalog name")
    schema_name = f"{catalog}.{validate_part(body.schema_name, 'schema name')}"
    full_name = f"{schema_name}.{validate_part(body.name, 'table name')}"
    request.state.audit_params = {"full_name": full_name}
    platform.authorizer.require(caller, Privilege.CREATE_TABLE, SecurableType.SCHEMA, schema_name)
    columns: list[Column] = [parse_column(c) for c in body.columns]
    schema = arrow_schema(columns)
    storage = platform.table_storage
    location = storage.location(full_name)
    info = platform.governance.create(
        SecurableType.TABLE,
        full_name,
        owner_id=caller.principal_id,
        created_by=caller.name,
        comment=body.comment,
        properties={
            "table_type": "MANAGED",
            "data_source_format": "DELTA",
            "columns": [c.as_dict(i) for i, c in enumerate(columns)],
            "storage_location": location,
            "user_properties": body.properties or {},
        },
    )
    try:
        storage.remove(location)  # the files of a dropped table of this name, if any
        storage.prepare(location)
        with reachable(f"create {full_name}"):
            create_table_if_missing(
                location,
                schema,
                name=full_name,
                description=body.comment,
                storage_options=storage.options,
            )
    except Exception:
        platform.governance.delete(SecurableType.TABLE, full_name)
        raise
    return table_info(info)


@router.get("/tables", name="list_tables")
def list_tables(
    request: Request,
    catalog_name: str,
    schema_name: str,
    caller: Caller = Depends(authenticated("catalog.tables:read")),
) -> dict[str, Any]:
    platform = platform_of(request)
    schema = parse_name(SecurableType.SCHEMA, f"{catalog_name}.{schema_name}")
    platform.authorizer.require(caller, Privilege.USE_SCHEMA, SecurableType.SCHEMA, schema)
    infos = platform.governance.list_securables(SecurableType.TABLE, schema)
    visible = [
        i
        for i in infos
        if platform.authorizer.visible(caller, platform.authorizer.node(i.type, i.full_name))
    ]
    return {"tables": [table_info(i) for i in visible]}


@router.get("/tables/{full_name}", name="get_table")
def get_table(
    request: Request,
    full_name: str,
    caller: Caller = Depends(authenticated("catalog.tables:read")),
) -> dict[str, Any]:
    platform = platform_of(request)
    name = parse_name(SecurableType.TABLE, full_name)
    platform.authorizer.require(caller, Privilege.SELECT, SecurableType.TABLE, name)
    return table_info(platform.governance.get(SecurableType.TABLE, name))


@router.delete("/tables/{full_name}", name="delete_table")
def delete_table(
    request: Request, full_name: str, caller: Caller = Depends(authenticated("catalog.tables"))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = parse_name(SecurableType.TABLE, full_name)
    info = platform.governance.get(SecurableType.TABLE, name)
    delete_securable(platform, caller, SecurableType.TABLE, name, False)
    location = info.properties.get("storage_location")
    if location and platform.table_storage.is_managed(location):
        platform.table_storage.discard(location)
    return {}
