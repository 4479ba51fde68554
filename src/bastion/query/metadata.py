"""SHOW, DESCRIBE and ``information_schema``, computed from governance metadata.

Every listing is filtered for the caller: catalogs and schemas they may see, and tables,
views and functions they hold a privilege on (directly, through a group, by ownership, or
inherited from the catalog or schema). Storage locations are never shown.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from bastion.errors import InvalidRequest, NotFound, PermissionDenied
from bastion.governance.authorizer import Node
from bastion.governance.privileges import APPLICABLE, Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import SecurableInfo
from bastion.identity.model import Caller
from bastion.platform import Platform
from bastion.query.catalog import CatalogCache
from bastion.tables.storage import TableStorage, reachable

SYSTEM_CATALOG = "system"
OBJECT_PRIVILEGES = frozenset(
    {
        Privilege.SELECT,
        Privilege.MODIFY,
        Privilege.MANAGE,
        Privilege.ALL_PRIVILEGES,
        Privilege.EXECUTE,
    }
)


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def _node(platform: Platform, info: SecurableInfo) -> Node | None:
    return platform.authorizer.snapshot().by_name.get((info.type, info.full_name))


def visible(platform: Platform, caller: Caller, info: SecurableInfo) -> bool:
    """Catalogs and schemas: any privilege on them or below. Objects: an object privilege."""
    node = _node(platform, info)
    if node is None:
        return False
    if info.type in (SecurableType.CATALOG, SecurableType.SCHEMA):
        return platform.authorizer.visible(caller, node)
    return bool(platform.authorizer.effective(caller, node) & OBJECT_PRIVILEGES)


def _listing(
    platform: Platform, caller: Caller, securable_type: SecurableType, catalog: str | None
) -> list[SecurableInfo]:
    out = []
    for info in platform.governance.list_securables(securable_type):
        if catalog is not None and info.full_name.split(".")[0] != catalog:
            continue
        if visible(platform, caller, info):
            out.append(info)
    return out


def _like(names: Iterable[str], pattern: str | None) -> set[str] | None:
    """Databricks' SHOW ... LIKE: ``*`` matches anything, ``|`` separates alternatives."""
    if pattern is None:
        return None
    alternatives = [p.strip().lower() for p in pattern.split("|")]
    return {n for n in names if any(fnmatch.fnmatchcase(n.lower(), p) for p in alternatives)}


def _audit_fields(info: SecurableInfo) -> dict[str, Any]:
    return {
        "comment": info.comment,
        "created": _ts(info.created_at),
        "created_by": info.created_by,
        "last_altered": _ts(info.updated_at),
        "last_altered_by": info.updated_by,
    }


_AUDIT_SCHEMA = [
    ("comment", pa.string()),
    ("created", pa.timestamp("us", tz="UTC")),
    ("created_by", pa.string()),
    ("last_altered", pa.timestamp("us", tz="UTC")),
    ("last_altered_by", pa.string()),
]


def information_schema(
    platform: Platform, cache: CatalogCache, caller: Caller, catalog: str, name: str
) -> pa.Table:
    """One ``<catalog>.information_schema.<name>`` view (``system`` lists every catalog)."""
    builder = _VIEWS.get(name)
    if builder is None:
        raise InvalidRequest(
            f"[TABLE_OR_VIEW_NOT_FOUND] '{catalog}.information_schema.{name}' does not exist; "
            "available: " + ", ".join(sorted(_VIEWS)) + "."
        )
    if catalog != SYSTEM_CATALOG:
        node = cache.node(SecurableType.CATALOG, catalog)
        if node is None:
            raise NotFound(f"Catalog '{catalog}' does not exist.")
        if not platform.authorizer.visible(caller, node):
            raise PermissionDenied(f"User {caller.name} may not see catalog '{catalog}'.")
    return builder(platform, caller, None if catalog == SYSTEM_CATALOG else catalog)


def _catalogs(platform: Platform, caller: Caller, catalog: str | None) -> pa.Table:
    rows = [
        {"catalog_name": i.full_name, "catalog_owner": i.owner, **_audit_fields(i)}
        for i in _listing(platform, caller, SecurableType.CATALOG, catalog)
    ]
    schema = pa.schema([("catalog_name", pa.string()), ("catalog_owner", pa.string())])
    return _table(rows, pa.schema(list(schema) + [pa.field(*f) for f in _AUDIT_SCHEMA]))


def _schemata(platform: Platform, caller: Caller, catalog: str | None) -> pa.Table:
    rows = []
    for info in _listing(platform, caller, SecurableType.SCHEMA, catalog):
        catalog_name, schema_name = info.full_name.split(".")
        rows.append(
            {
                "catalog_name": catalog_name,
                "schema_name": schema_name,
                "schema_owner": info.owner,
                **_audit_fields(info),
            }
        )
    fields = [("catalog_name", pa.string()), ("schema_name", pa.string())]
    fields += [("schema_owner", pa.string()), *_AUDIT_SCHEMA]
    return _table(rows, pa.schema(fields))


def _relation_rows(
    platform: Platform, caller: Caller, catalog: str | None
) -> list[tuple[SecurableInfo, str, str, str]]:
    out = []
    for info in _listing(platform, caller, SecurableType.TABLE, catalog):
        catalog_name, schema_name, table_name = info.full_name.split(".")
        out.append((info, catalog_name, schema_name, table_name))
    return out


_NAME_FIELDS = [("table_catalog", pa.string()), ("table_schema", pa.string())]
_NAME_FIELDS.append(("table_name", pa.string()))


def _tables(platform: Platform, caller: Caller, catalog: str | None) -> pa.Table:
    rows = []
    for info, c, s, t in _relation_rows(platform, caller, catalog):
        kind = info.properties.get("table_type", "MANAGED")
        rows.append(
            {
                "table_catalog": c,
                "table_schema": s,
                "table_name": t,
                "table_type": kind,
                "is_insertable_into": "NO" if kind == "VIEW" else "YES",
                "table_owner": info.owner,
                "data_source_format": info.properties.get("data_source_format"),
                **_audit_fields(info),
            }
        )
    fields = [
        *_NAME_FIELDS,
        ("table_type", pa.string()),
        ("is_insertable_into", pa.string()),
        ("table_owner", pa.string()),
        ("data_source_format", pa.string()),
        *_AUDIT_SCHEMA,
    ]
    return _table(rows, pa.schema(fields))


def _views(platform: Platform, caller: Caller, catalog: str | None) -> pa.Table:
    rows = [
        {
            "table_catalog": c,
            "table_schema": s,
            "table_name": t,
            "view_definition": info.properties.get("view_definition"),
            "is_updatable": "NO",
            "is_insertable_into": "NO",
        }
        for info, c, s, t in _relation_rows(platform, caller, catalog)
        if info.properties.get("table_type") == "VIEW"
    ]
    fields = [*_NAME_FIELDS, ("view_definition", pa.string())]
    fields += [("is_updatable", pa.string()), ("is_insertable_into", pa.string())]
    return _table(rows, pa.schema(fields))


def _columns(platform: Platform, caller: Caller, catalog: str | None) -> pa.Table:
    rows = []
    for info, c, s, t in _relation_rows(platform, caller, catalog):
        masks = info.properties.get("column_masks") or {}
        for column in info.properties.get("columns", []):
            mask = masks.get(column["name"])
            rows.append(
                {
                    "table_catalog": c,
                    "table_schema": s,
                    "table_name": t,
                    "column_name": column["name"],
                    "ordinal_position": column["position"],
                    "is_nullable": "YES" if column.get("nullable", True) else "NO",
                    "full_data_type": column["type_text"],
                    "data_type": column["type_name"],
                    "comment": column.get("comment"),
                    "mask_name": mask["function"] if mask else None,
                }
            )
    fields = [
        *_NAME_FIELDS,
        ("column_name", pa.string()),
        ("ordinal_position", pa.int32()),
        ("is_nullable", pa.string()),
        ("full_data_type", pa.string()),
        ("data_type", pa.string()),
        ("comment", pa.string()),
        ("mask_name", pa.string()),
    ]
    return _table(rows, pa.schema(fields))


def _table_privileges(platform: Platform, caller: Caller, catalog: str | None) -> pa.Table:
    """Grants on visible tables: all of them for those who manage grants, else the caller's."""
    names = {pid: n for n, pid in _principal_ids(platform).items()}
    snap = platform.authorizer.snapshot()
    rows = []
    for info, c, s, t in _relation_rows(platform, caller, catalog):
        node = snap.by_name.get((info.type, info.full_name))
        if node is None:
            continue
        current: Node | None = node
        while current is not None:
            for principal_id, privileges in snap.grants.get(current.id, {}).items():
                grantee = names.get(principal_id)
                if grantee is None or not platform.authorizer.sees_grantee(caller, node, grantee):
                    continue
                for privilege in sorted(privileges & APPLICABLE[SecurableType.TABLE]):
                    rows.append(
                        {
                            "grantor": names.get(current.owner_id),
                            "grantee": grantee,
                            "table_catalog": c,
                            "table_schema": s,
                            "table_name": t,
                            "privilege_type": privilege.sql,
                            "is_grantable": "NO",
                            "inherited_from": None
                            if current is node
                            else f"{current.type.value.upper()} {current.full_name}",
                        }
                    )
            current = snap.nodes.get(current.parent_id) if current.parent_id else None
    fields = [("grantor", pa.string()), ("grantee", pa.string()), *_NAME_FIELDS]
    fields += [("privilege_type", pa.string()), ("is_grantable", pa.string())]
    fields += [("inherited_from", pa.string())]
    return _table(rows, pa.schema(fields))


def _principal_ids(platform: Platform) -> dict[str, int]:
    snap = platform.identity_cache.snapshot()
    return {record.name: pid for pid, record in snap.principals.items()}


def _routines(platform: Platform, caller: Caller, catalog: str | None) -> pa.Table:
    rows = []
    for info in _listing(platform, caller, SecurableType.FUNCTION, catalog):
        c, s, f = info.full_name.split(".")
        props = info.properties
        rows.append(
            {
                "routine_catalog": c,
                "routine_schema": s,
                "routine_name": f,
                "routine_owner": info.owner,
                "data_type": props.get("return_type"),
                "routine_body": "SQL",
                "routine_definition": props.get("routine_definition"),
                "parameters": ", ".join(
                    f"{p['name']} {p['type_text']}" for p in props.get("parameters", [])
                ),
                **_audit_fields(info),
            }
        )
    fields = [("routine_catalog", pa.string()), ("routine_schema", pa.string())]
    fields += [("routine_name", pa.string()), ("routine_owner", pa.string())]
    fields += [("data_type", pa.string()), ("routine_body", pa.string())]
    fields += [("routine_definition", pa.string()), ("parameters", pa.string()), *_AUDIT_SCHEMA]
    return _table(rows, pa.schema(fields))


def _row_filters(platform: Platform, caller: Caller, catalog: str | None) -> pa.Table:
    rows = []
    for info, c, s, t in _relation_rows(platform, caller, catalog):
        row_filter = info.properties.get("row_filter")
        if row_filter:
            rows.append(
                {
                    "table_catalog": c,
                    "table_schema": s,
                    "table_name": t,
                    "filter_name": row_filter["function"],
                    "target_columns": ", ".join(row_filter.get("columns", [])),
                }
            )
    fields = [*_NAME_FIELDS, ("filter_name", pa.string()), ("target_columns", pa.string())]
    return _table(rows, pa.schema(fields))


_VIEWS = {
    "catalogs": _catalogs,
    "schemata": _schemata,
    "tables": _tables,
    "views": _views,
    "columns": _columns,
    "table_privileges": _table_privileges,
    "routines": _routines,
    "row_filters": _row_filters,
}


# -- SHOW and DESCRIBE --------------------------------------------------------------------


def show_catalogs(platform: Platform, caller: Caller, like: str | None) -> pa.Table:
    names = [i.full_name for i in _listing(platform, caller, SecurableType.CATALOG, None)]
    keep = _like(names, like)
    return pa.table(
        {"catalog": [n for n in names if keep is None or n in keep]},
        pa.schema([("catalog", pa.string())]),
    )


def show_schemas(
    platform: Platform, cache: CatalogCache, caller: Caller, catalog: str, like: str | None
) -> pa.Table:
    _require_visible(platform, cache, caller, SecurableType.CATALOG, catalog)
    names = [
        i.full_name.split(".")[1] for i in _listing(platform, caller, SecurableType.SCHEMA, catalog)
    ]
    keep = _like(names, like)
    values = [n for n in names if keep is None or n in keep]
    return pa.table({"databaseName": pa.array(values, pa.string())})


def show_tables(
    platform: Platform, cache: CatalogCache, caller: Caller, schema: str, like: str | None
) -> pa.Table:
    _require_visible(platform, cache, caller, SecurableType.SCHEMA, schema)
    infos = [
        i
        for i in platform.governance.list_securables(SecurableType.TABLE, schema)
        if visible(platform, caller, i)
    ]
    keep = _like([i.name for i in infos], like)
    infos = [i for i in infos if keep is None or i.name in keep]
    return pa.table(
        {
            "database": pa.array([schema.split(".")[1]] * len(infos), pa.string()),
            "tableName": pa.array([i.name for i in infos], pa.string()),
            "isTemporary": pa.array([False] * len(infos), pa.bool_()),
        }
    )


def show_functions(
    platform: Platform, cache: CatalogCache, caller: Caller, schema: str, like: str | None
) -> pa.Table:
    _require_visible(platform, cache, caller, SecurableType.SCHEMA, schema)
    names = [
        i.full_name
        for i in platform.governance.list_securables(SecurableType.FUNCTION, schema)
        if visible(platform, caller, i)
    ]
    keep = _like([n.rsplit(".", 1)[1] for n in names], like)
    values = [n for n in names if keep is None or n.rsplit(".", 1)[1] in keep]
    return pa.table({"function": pa.array(values, pa.string())})


def show_grants(
    platform: Platform,
    cache: CatalogCache,
    caller: Caller,
    securable_type: SecurableType,
    full_name: str,
    principal: str | None,
) -> pa.Table:
    node = _require_visible(platform, cache, caller, securable_type, full_name)
    rows = [
        (who, privilege.sql)
        for who, privileges in platform.governance.grants(node.id).items()
        for privilege in privileges
        if (principal is None or who == principal)
        and platform.authorizer.sees_grantee(caller, node, who)
    ]
    return pa.table(
        {
            "principal": pa.array([r[0] for r in rows], pa.string()),
            "action_type": pa.array([r[1] for r in rows], pa.string()),
            "object_type": pa.array([securable_type.value.upper()] * len(rows), pa.string()),
            "object_key": pa.array([full_name] * len(rows), pa.string()),
        }
    )


_HISTORY_SCHEMA = pa.schema(
    [
        ("version", pa.int64()),
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("operation", pa.string()),
        ("operationParameters", pa.map_(pa.string(), pa.string())),
        ("readVersion", pa.int64()),
        ("isolationLevel", pa.string()),
        ("isBlindAppend", pa.bool_()),
        ("operationMetrics", pa.map_(pa.string(), pa.string())),
        ("userMetadata", pa.string()),
        ("engineInfo", pa.string()),
    ]
)


def describe_history(info: SecurableInfo, limit: int | None, storage: TableStorage) -> pa.Table:
    """``DESCRIBE HISTORY``: the table's Delta commits, newest first (Databricks' columns)."""
    location = info.properties.get("storage_location")
    if info.properties.get("table_type") == "VIEW" or not location:
        raise InvalidRequest(f"'{info.full_name}' is a view; only tables have a history.")
    with reachable(f"read the history of '{info.full_name}'"):
        commits = DeltaTable(location, storage_options=storage.options_for(location)).history(limit)

    def pairs(value: object) -> list[tuple[str, str]]:
        items = value.items() if isinstance(value, dict) else []
        return [(str(k), str(v)) for k, v in items]

    rows = [
        {
            "version": c.get("version"),
            "timestamp": c.get("timestamp"),
            "operation": c.get("operation"),
            "operationParameters": pairs(c.get("operationParameters")),
            "readVersion": c.get("readVersion"),
            "isolationLevel": c.get("isolationLevel"),
            "isBlindAppend": c.get("isBlindAppend"),
            "operationMetrics": pairs(c.get("operationMetrics")),
            "userMetadata": c.get("userMetadata"),
            "engineInfo": c.get("engineInfo"),
        }
        for c in commits
    ]
    return pa.Table.from_pylist(rows, schema=_HISTORY_SCHEMA)


def describe_table(info: SecurableInfo, *, extended: bool) -> pa.Table:
    rows: list[tuple[str, str | None, str | None]] = [
        (c["name"], c["type_text"], c.get("comment"))
        for c in sorted(info.properties.get("columns", []), key=lambda c: c["position"])
    ]
    if extended:
        catalog, schema, name = info.full_name.split(".")
        props = info.properties
        rows += [
            ("", "", ""),
            ("# Detailed Table Information", "", ""),
            ("Catalog", catalog, ""),
            ("Database", schema, ""),
            ("Table", name, ""),
            ("Owner", info.owner, ""),
            ("Type", props.get("table_type", "MANAGED"), ""),
            ("Comment", info.comment, ""),
        ]
        if props.get("view_definition"):
            rows.append(("View Text", props["view_definition"], ""))
        row_filter = props.get("row_filter")
        if row_filter:
            rows.append(
                (
                    "Row Filter",
                    f"{row_filter['function']} ON ({', '.join(row_filter['columns'])})",
                    "",
                )
            )
        for column, mask in (props.get("column_masks") or {}).items():
            rows.append(("Column Mask", f"{column}: {mask['function']}", ""))
    return pa.table(
        {
            "col_name": pa.array([r[0] for r in rows], pa.string()),
            "data_type": pa.array([r[1] for r in rows], pa.string()),
            "comment": pa.array([r[2] for r in rows], pa.string()),
        }
    )


def _require_visible(
    platform: Platform,
    cache: CatalogCache,
    caller: Caller,
    securable_type: SecurableType,
    full_name: str,
) -> Node:
    node = cache.node(securable_type, full_name)
    if node is None:
        raise NotFound(f"{securable_type.label.capitalize()} '{full_name}' does not exist.")
    if not platform.authorizer.visible(caller, node):
        raise PermissionDenied(
            f"User {caller.name} may not see {securable_type.label} '{full_name}'."
        )
    return node


def check_like(pattern: str | None) -> str | None:
    if pattern is not None and len(pattern) > 1000:
        raise InvalidRequest("LIKE pattern is too long.")
    return pattern
