"""Unity Catalog functions: ``/api/2.1/unity-catalog/functions``, as databricks-sdk calls them.

Functions are the SQL scalar functions of governed SQL (``CREATE FUNCTION … RETURN expr``):
created here they go through the same SQL path (validated, allow-listed, compiled, audited),
so both doors lead to one kind of object. Reading one needs ``EXECUTE`` (or ownership) with
the ``USE`` rights above it; listing shows what the caller may see.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import InvalidRequest
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType, parse_name, validate_part
from bastion.governance.store import SecurableInfo
from bastion.identity.model import Caller
from bastion.query import engine_of
from bastion.server.auth import authenticated, platform_of
from bastion.server.routes.catalogs import METASTORE_ID, delete_securable
from bastion.tables.columns import arrow_type

router = APIRouter(prefix="/api/2.1/unity-catalog", tags=["unityCatalog"])
READ = "catalog.functions:read"
WRITE = "catalog.functions"
_TYPE = re.compile(r"^[A-Za-z0-9_<>(),: ]{1,200}$")
_PARAMETER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class FunctionParameter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=128)
    type_text: str = Field(max_length=200)
    type_name: str | None = Field(default=None, max_length=64)
    position: int | None = Field(default=None, ge=0, le=1000)
    comment: str | None = Field(default=None, max_length=1000)


class FunctionParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: list[FunctionParameter] = Field(default_factory=list, max_length=100)


class CreateFunctionInfo(BaseModel):
    """databricks-sdk's ``CreateFunction``; what Bastion cannot honour is refused."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(max_length=255)
    catalog_name: str = Field(max_length=255)
    schema_name: str = Field(max_length=255)
    input_params: FunctionParameters = Field(default_factory=FunctionParameters)
    data_type: str | None = Field(default=None, max_length=64)
    full_data_type: str = Field(max_length=200)
    routine_body: str = Field(default="SQL", max_length=16)
    routine_definition: str = Field(min_length=1, max_length=100_000)
    comment: str | None = Field(default=None, max_length=10_000)
    return_params: FunctionParameters | None = None


class CreateFunction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function_info: CreateFunctionInfo


def _type_name(type_text: str) -> str:
    return arrow_type(type_text)[0]


def function_info(info: SecurableInfo) -> dict[str, Any]:
    """``FunctionInfo`` in databricks-sdk's shape."""
    catalog, schema, name = info.full_name.split(".")
    props = info.properties
    return_type = props.get("return_type") or "string"
    parameters = [
        {
            "name": p["name"],
            "type_text": p["type_text"],
            "type_name": _type_name(p["type_text"]),
            "type_json": "",
            "position": i,
            "parameter_mode": "IN",
            "parameter_type": "PARAM",
        }
        for i, p in enumerate(props.get("parameters", []))
    ]
    return {
        "name": name,
        "catalog_name": catalog,
        "schema_name": schema,
        "full_name": info.full_name,
        "input_params": {"parameters": parameters},
        "data_type": _type_name(return_type),
        "full_data_type": return_type,
        "routine_body": props.get("routine_body", "SQL"),
        "routine_definition": props.get("routine_definition"),
        "parameter_style": "S",
        "is_deterministic": True,
        "sql_data_access": "CONTAINS_SQL",
        "is_null_call": False,
        "security_type": "DEFINER",
        "specific_name": name,
        "comment": info.comment,
        "owner": info.owner,
        "metastore_id": METASTORE_ID,
        "function_id": str(info.id),
        "created_at": info.created_at,
        "created_by": info.created_by,
        "updated_at": info.updated_at,
        "updated_by": info.updated_by,
    }


def _create_sql(body: CreateFunctionInfo) -> tuple[str, str]:
    """The function's full name and the ``CREATE FUNCTION`` statement that makes it."""
    if body.routine_body.upper() != "SQL":
        raise InvalidRequest(
            "Only SQL functions can be created (routine_body 'SQL'); external languages are "
            "not supported."
        )
    catalog = validate_part(body.catalog_name, "catalog name")
    schema = validate_part(body.schema_name, "schema name")
    name = validate_part(body.name, "function name")
    params = []
    for param in sorted(body.input_params.parameters, key=lambda p: p.position or 0):
        if not _PARAMETER.match(param.name) or not _TYPE.match(param.type_text):
            raise InvalidRequest(f"Invalid function parameter {param.name!r} {param.type_text!r}.")
        arrow_type(param.type_text.lower())
        params.append(f"{param.name} {param.type_text}")
    if not _TYPE.match(body.full_data_type):
        raise InvalidRequest(f"Invalid return type {body.full_data_type!r}.")
    arrow_type(body.full_data_type.lower())
    full_name = f"{catalog}.{schema}.{name}"
    quoted = ".".join(f"`{part}`" for part in (catalog, schema, name))
    comment = ""
    if body.comment:
        comment = " COMMENT '" + body.comment.replace("\\", "\\\\").replace("'", "\\'") + "'"
    statement = (
        f"CREATE FUNCTION {quoted}({', '.join(params)}) RETURNS {body.full_data_type}"
        f"{comment} RETURN {body.routine_definition}"
    )
    return full_name, statement


@router.post("/functions", name="create_function")
def create_function(
    request: Request, body: CreateFunction, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    platform = platform_of(request)
    full_name, statement = _create_sql(body.function_info)
    request.state.audit_params = {"full_name": full_name}
    engine_of(platform).execute(caller, statement)
    return function_info(platform.governance.get(SecurableType.FUNCTION, full_name))


@router.get("/functions", name="list_functions")
def list_functions(
    request: Request,
    catalog_name: str,
    schema_name: str,
    caller: Caller = Depends(authenticated(READ)),
) -> dict[str, Any]:
    platform = platform_of(request)
    schema = parse_name(SecurableType.SCHEMA, f"{catalog_name}.{schema_name}")
    platform.authorizer.require(caller, Privilege.USE_SCHEMA, SecurableType.SCHEMA, schema)
    infos = platform.governance.list_securables(SecurableType.FUNCTION, schema)
    visible = [
        i
        for i in infos
        if platform.authorizer.visible(caller, platform.authorizer.node(i.type, i.full_name))
    ]
    return {"functions": [function_info(i) for i in visible]}


@router.get("/functions/{full_name}", name="get_function")
def get_function(
    request: Request, full_name: str, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = parse_name(SecurableType.FUNCTION, full_name)
    platform.authorizer.require(caller, Privilege.EXECUTE, SecurableType.FUNCTION, name)
    return function_info(platform.governance.get(SecurableType.FUNCTION, name))


@router.delete("/functions/{full_name}", name="delete_function")
def delete_function(
    request: Request, full_name: str, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    platform = platform_of(request)
    name = parse_name(SecurableType.FUNCTION, full_name)
    request.state.audit_params = {"full_name": name}
    delete_securable(platform, caller, SecurableType.FUNCTION, name, False)
    return {}
