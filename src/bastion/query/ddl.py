"""CREATE VIEW, CREATE FUNCTION, CREATE TABLE [AS SELECT], INSERT INTO and DROP."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from sqlglot import exp

from bastion.errors import AlreadyExists, InvalidRequest, NotFound, PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.query import allowlist, runner
from bastion.query.context import Context
from bastion.query.names import qualify, table_parts
from bastion.query.result import describe_type, message_table, storable_type
from bastion.tables.columns import Column, arrow_schema, arrow_type, parse_column
from bastion.tables.delta import create_table_if_missing
from bastion.tables.storage import reachable

_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def _properties(tree: exp.Create, allowed: tuple[type[exp.Expr], ...]) -> str | None:
    """The COMMENT of a CREATE, refusing any property not in ``allowed``."""
    comment = None
    properties = tree.args.get("properties")
    for prop in properties.expressions if properties else []:
        if not isinstance(prop, allowed):
            raise InvalidRequest(
                f"{prop.sql(dialect='databricks') or type(prop).__name__} is not supported here."
            )
        if isinstance(prop, exp.SchemaCommentProperty):
            comment = prop.this.name
    return comment


def _target(node: exp.Expr) -> tuple[str, list[str] | None]:
    """Full name and optional column list of ``name`` or ``name (a, b)``."""
    columns = None
    if isinstance(node, exp.Schema):
        columns = [c.name for c in node.expressions]
        node = node.this
    if not isinstance(node, exp.Table):
        raise InvalidRequest("Expected a table name.")
    return qualify(table_parts(node)), columns


def _save(
    ctx: Context,
    securable_type: SecurableType,
    full_name: str,
    comment: str | None,
    properties: dict[str, Any],
    *,
    replace: bool,
) -> None:
    """Register a new view or function as the caller's, or update the one being replaced."""
    governance = ctx.platform.governance
    if replace:
        governance.update(
            securable_type,
            full_name,
            updated_by=ctx.caller.name,
            comment=comment,
            properties=properties,
        )
    else:
        governance.create(
            securable_type,
            full_name,
            owner_id=ctx.caller.principal_id,
            created_by=ctx.caller.name,
            comment=comment,
            properties=properties,
        )


def _replaceable(
    ctx: Context, securable_type: SecurableType, full_name: str, tree: exp.Create
) -> bool:
    """Whether to update an existing object (OR REPLACE by its owner); False: create it."""
    node = ctx.catalog.node(securable_type, full_name)
    if node is None:
        return False
    if not tree.args.get("replace"):
        raise AlreadyExists(f"{securable_type.label.capitalize()} '{full_name}' already exists.")
    if not ctx.platform.authorizer.can_manage_grants(ctx.caller, node):
        raise PermissionDenied(
            f"User {ctx.caller.name} may not replace {securable_type.label} '{full_name}'; "
            "that needs ownership or MANAGE."
        )
    return True


def _exists_ok(
    ctx: Context, securable_type: SecurableType, full_name: str, tree: exp.Create
) -> bool:
    return bool(tree.args.get("exists")) and ctx.catalog.node(securable_type, full_name) is not None


# -- views ----------------------------------------------------------------------------------


def create_view(ctx: Context, tree: exp.Create) -> pa.Table:
    full_name, names = _target(tree.this)
    comment = _properties(tree, (exp.SchemaCommentProperty,))
    body = tree.expression
    if not isinstance(body, exp.Query):
        raise InvalidRequest("CREATE VIEW needs AS followed by a query.")
    if any(True for _ in body.find_all(exp.Placeholder)):
        raise InvalidRequest("A view's query cannot use parameter markers.")
    ctx.platform.authorizer.require(
        ctx.caller, Privilege.CREATE_TABLE, SecurableType.SCHEMA, full_name.rsplit(".", 1)[0]
    )
    if _exists_ok(ctx, SecurableType.TABLE, full_name, tree):
        return pa.table({})
    definition = body.sql(dialect="databricks")
    # The creator must be able to read everything the view reads: plan it as them.
    plan = ctx.plan(body.copy())
    sql = f"SELECT * FROM ({plan.sql()}) AS __view LIMIT 0"
    shape, _ = ctx.run(plan, max_rows=0, sql=sql)
    output = shape.schema.names
    if names is not None and len(names) != len(output):
        raise InvalidRequest(
            f"The view lists {len(names)} column name(s) but its query returns {len(output)}."
        )
    final = [n.lower() for n in names] if names is not None else list(output)
    if len({n.lower() for n in final}) != len(final):
        raise InvalidRequest("A view's column names must be unique; alias the duplicates.")
    columns = []
    for position, (name, field) in enumerate(zip(final, shape.schema, strict=True)):
        type_text, type_name = describe_type(field.type)
        columns.append(
            {
                "name": name,
                "type_text": type_text,
                "type_name": type_name,
                "position": position,
                "nullable": True,
                "comment": None,
            }
        )
    properties = {"table_type": "VIEW", "view_definition": definition, "columns": columns}
    replace = _replaceable(ctx, SecurableType.TABLE, full_name, tree)
    if replace:
        info = ctx.catalog.info(SecurableType.TABLE, full_name)
        if info.properties.get("table_type") != "VIEW":
            raise InvalidRequest(f"'{full_name}' is a table, not a view.")
    _save(ctx, SecurableType.TABLE, full_name, comment, properties, replace=replace)
    return pa.table({})


# -- functions ------------------------------------------------------------------------------


def create_function(ctx: Context, tree: exp.Create) -> pa.Table:
    udf = tree.this
    if not isinstance(udf, exp.UserDefinedFunction) or not isinstance(udf.this, exp.Table):
        raise InvalidRequest("Expected CREATE FUNCTION name(param type, ...) RETURN expression.")
    full_name = qualify(table_parts(udf.this))
    return_type = None
    properties = tree.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.ReturnsProperty) and not prop.args.get("is_table"):
            return_type = _type_text(prop.this)
        elif isinstance(prop, exp.LanguageProperty) and prop.name.upper() == "SQL":
            pass
        elif not isinstance(prop, (exp.SchemaCommentProperty, exp.StabilityProperty)):
            raise InvalidRequest(
                "Only SQL scalar functions are supported: CREATE FUNCTION f(x STRING) "
                "[RETURNS type] RETURN expression (no TEMPORARY, LANGUAGE PYTHON or "
                "RETURNS TABLE)."
            )
    comment = _properties(
        tree,
        (
            exp.SchemaCommentProperty,
            exp.ReturnsProperty,
            exp.LanguageProperty,
            exp.StabilityProperty,
        ),
    )
    parameters = []
    for definition in udf.expressions:
        if not isinstance(definition, exp.ColumnDef) or definition.args.get("kind") is None:
            raise InvalidRequest("Each function parameter needs a name and a type.")
        parameters.append(
            {"name": definition.name.lower(), "type_text": _type_text(definition.args["kind"])}
        )
    body = tree.expression
    if isinstance(body, exp.Return):
        body = body.this
    if not isinstance(body, exp.Expr) or isinstance(body, (exp.Query, exp.Heredoc)):
        raise InvalidRequest("A SQL function's body is one expression: RETURN <expression>.")
    _check_function_body(full_name, body, {p["name"] for p in parameters})
    ctx.platform.authorizer.require(
        ctx.caller, Privilege.CREATE_FUNCTION, SecurableType.SCHEMA, full_name.rsplit(".", 1)[0]
    )
    if _exists_ok(ctx, SecurableType.FUNCTION, full_name, tree):
        return pa.table({})
    _compile_check(ctx, body, parameters)
    props: dict[str, Any] = {
        "routine_body": "SQL",
        "parameters": parameters,
        "return_type": return_type,
        "routine_definition": body.sql(dialect="databricks"),
    }
    replace = _replaceable(ctx, SecurableType.FUNCTION, full_name, tree)
    _save(ctx, SecurableType.FUNCTION, full_name, comment, props, replace=replace)
    return pa.table({})


def _type_text(node: exp.Expr) -> str:
    text = node.sql(dialect="databricks").lower()
    arrow_type(text)  # raises InvalidRequest for a type tables cannot hold
    return text


def _check_function_body(full_name: str, body: exp.Expr, params: set[str]) -> None:
    allowlist.check(body, what="function body")
    for node in body.walk():
        if isinstance(node, (exp.Query, exp.Table, exp.Placeholder)):
            raise InvalidRequest(
                "A SQL function's body may not contain queries, tables or parameter markers."
            )
        if isinstance(node, exp.Column) and (
            node.args.get("table") or node.name.lower() not in params
        ):
            raise InvalidRequest(f"Function '{full_name}' refers to unknown {node.sql()}.")
        if isinstance(node, exp.Anonymous) and node.name.lower() not in (
            allowlist.BUILTIN_NAMES | allowlist.IDENTITY_NAMES
        ):
            raise InvalidRequest(
                f"Function {node.name}() is not supported inside a SQL function's body."
            )


def _compile_check(ctx: Context, body: exp.Expr, parameters: list[dict[str, str]]) -> None:
    """Bind the body with typed NULLs and let DuckDB type-check it, so errors show now."""
    probe = body.copy()
    types = {p["name"]: p["type_text"] for p in parameters}
    for column in list(probe.find_all(exp.Column)):
        column.replace(
            exp.cast(
                exp.null(), exp.DataType.build(types[column.name.lower()], dialect="databricks")
            )
        )
    for anonymous in list(probe.find_all(exp.Anonymous)):
        if anonymous.name.lower() in allowlist.IDENTITY_NAMES:
            anonymous.replace(exp.false())
    for identity in list(probe.find_all(exp.CurrentUser, exp.SessionUser)):
        identity.replace(exp.Literal.string(ctx.caller.name))
    sql = f"SELECT {probe.sql(dialect='duckdb')} LIMIT 0"
    runner.run(sql, {}, {}, ctx.limits, max_rows=0, cancel=ctx.cancel)


# -- tables ---------------------------------------------------------------------------------


def _conform(data: pa.Table, schema: pa.Schema, names: list[str] | None) -> pa.Table:
    """``data``'s columns, by position or by the listed names, cast to the table's types."""
    if names is None:
        if data.num_columns != len(schema):
            raise InvalidRequest(
                f"The table has {len(schema)} column(s) but the query returns {data.num_columns}."
            )
        names = list(schema.names)
    else:
        names = [n.lower() for n in names]
        unknown = [n for n in names if n not in schema.names]
        if unknown:
            raise InvalidRequest(f"The table has no column(s) {', '.join(unknown)}.")
        if len(names) != data.num_columns or len(set(names)) != len(names):
            raise InvalidRequest("List each target column once, one per query column.")
    positions = {name: i for i, name in enumerate(names)}
    arrays = []
    for field in schema:
        if field.name in positions:
            column = data.column(positions[field.name])
            try:
                arrays.append(column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise InvalidRequest(
                    f"Column {field.name!r}: cannot store {column.type} as {field.type} ({error})."
                ) from None
        else:
            if not field.nullable:
                raise InvalidRequest(f"Column {field.name!r} is NOT NULL and needs a value.")
            arrays.append(pa.nulls(data.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _source_query(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Values):
        return exp.select("*").from_(node)
    if isinstance(node, exp.Query):
        return node
    raise InvalidRequest("INSERT needs VALUES (...) or a query.")


def insert(ctx: Context, tree: exp.Insert) -> pa.Table:
    for flag in (
        "overwrite",
        "exists",
        "partition",
        "where",
        "returning",
        "conflict",
        "alternative",
    ):
        if tree.args.get(flag):
            raise InvalidRequest(
                "Only INSERT INTO <table> [(columns)] VALUES ... | SELECT ... is supported."
            )
    full_name, names = _target(tree.this)
    if ctx.catalog.node(SecurableType.TABLE, full_name) is None:
        raise NotFound(f"Table '{full_name}' does not exist.")
    ctx.platform.authorizer.require(ctx.caller, Privilege.MODIFY, SecurableType.TABLE, full_name)
    info = ctx.catalog.info(SecurableType.TABLE, full_name)
    location = info.properties.get("storage_location")
    if info.properties.get("table_type") == "VIEW" or not location:
        raise InvalidRequest(f"'{full_name}' is a view; insert into a table.")
    columns = [parse_column(c) for c in info.properties.get("columns", [])]
    schema = arrow_schema(columns)
    with ctx.stream(_source_query(tree.expression)) as result:
        _conform(result.schema.empty_table(), schema, names)  # the shape, before any row
        with reachable(f"insert into {full_name}"):
            table = DeltaTable(
                location, storage_options=ctx.platform.table_storage.options_for(location)
            )
        count = _append(
            table,
            schema,
            (_conform(pa.Table.from_batches([b]), schema, names) for b in result),
        )
    return message_table(num_affected_rows=count, num_inserted_rows=count)


def _append(table: DeltaTable, schema: pa.Schema, parts: Iterator[pa.Table]) -> int:
    """Stream ``parts`` into one Delta commit (none if they hold no row); the rows written.

    The writer pulls the parts as the SQL worker sends them, so the server holds a few
    batches at a time, whatever the size. If a part fails (a value that does not fit, the
    deadline), the writer aborts before committing: the table does not change.
    """
    first = next((part for part in parts if part.num_rows), None)
    if first is None:
        return 0
    count = 0
    failure: list[BaseException] = []

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal count
        try:
            for part in itertools.chain([first], parts):
                count += part.num_rows
                yield from part.to_batches()
        except BaseException as error:
            failure.append(error)
            raise

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    try:
        with reachable("write the table"):
            write_deltalake(table, reader, mode="append")
    except Exception:
        if failure:
            raise failure[0] from None
        raise
    return count


def create_table(ctx: Context, tree: exp.Create) -> pa.Table:
    full_name, _ = _target(tree.this)
    comment = _properties(tree, (exp.SchemaCommentProperty, exp.FileFormatProperty))
    properties = tree.args.get("properties")
    for prop in properties.expressions if properties else []:
        if isinstance(prop, exp.FileFormatProperty) and prop.name.upper() != "DELTA":
            raise InvalidRequest("Tables are Delta tables: use USING DELTA or leave it out.")
    if tree.args.get("replace"):
        raise InvalidRequest("CREATE OR REPLACE TABLE is not supported; drop the table first.")
    schema_name = full_name.rsplit(".", 1)[0]
    ctx.platform.authorizer.require(
        ctx.caller, Privilege.CREATE_TABLE, SecurableType.SCHEMA, schema_name
    )
    if _exists_ok(ctx, SecurableType.TABLE, full_name, tree):
        return message_table(num_affected_rows=0, num_inserted_rows=0)
    if ctx.catalog.node(SecurableType.TABLE, full_name) is not None:
        raise AlreadyExists(f"Table '{full_name}' already exists.")
    if tree.expression is None:
        if not isinstance(tree.this, exp.Schema):
            raise InvalidRequest("CREATE TABLE needs a column list or AS SELECT.")
        columns = [_column_def(c) for c in tree.this.expressions]
        _create_managed(ctx, full_name, columns, arrow_schema(columns), comment, iter(()))
        return message_table(num_affected_rows=0, num_inserted_rows=0)
    if isinstance(tree.this, exp.Schema):
        raise InvalidRequest("CREATE TABLE ... AS SELECT takes its columns from the query.")
    with ctx.stream(_source_query(tree.expression)) as result:
        columns = []
        for field in result.schema:
            if not _COLUMN_NAME.match(field.name):
                raise InvalidRequest(
                    f"Column name {field.name!r} cannot be stored; give it an alias (AS name)."
                )
            columns.append(
                parse_column(
                    {"name": field.name, "type_text": storable_type(field.type, field.name)}
                )
            )
        schema = arrow_schema(columns)
        count = _create_managed(
            ctx,
            full_name,
            columns,
            schema,
            comment,
            (_conform(pa.Table.from_batches([b]), schema, None) for b in result),
        )
    return message_table(num_affected_rows=count, num_inserted_rows=count)


def _column_def(node: exp.Expr) -> Column:
    if not isinstance(node, exp.ColumnDef) or node.args.get("kind") is None:
        raise InvalidRequest("Each column needs a name and a type.")
    nullable = not any(
        isinstance(c.kind, exp.NotNullColumnConstraint) for c in node.args.get("constraints") or []
    )
    comment = next(
        (
            c.kind.name
            for c in node.args.get("constraints") or []
            if isinstance(c.kind, exp.CommentColumnConstraint)
        ),
        None,
    )
    return parse_column(
        {
            "name": node.name,
            "type_text": _type_text(node.args["kind"]),
            "nullable": nullable,
            "comment": comment,
        }
    )


def _create_managed(
    ctx: Context,
    full_name: str,
    columns: list[Column],
    schema: pa.Schema,
    comment: str | None,
    rows: Iterator[pa.Table],
) -> int:
    """Register a managed Delta table the way the REST API does, then stream ``rows`` in.

    If anything fails, the table is unregistered and its files removed.
    """
    storage = ctx.platform.table_storage
    location = storage.location(full_name)
    ctx.platform.governance.create(
        SecurableType.TABLE,
        full_name,
        owner_id=ctx.caller.principal_id,
        created_by=ctx.caller.name,
        comment=comment,
        properties={
            "table_type": "MANAGED",
            "data_source_format": "DELTA",
            "columns": [c.as_dict(i) for i, c in enumerate(columns)],
            "storage_location": location,
            "user_properties": {},
        },
    )
    try:
        storage.remove(location)  # the files of a dropped table of this name, if any
        storage.prepare(location)
        with reachable(f"create {full_name}"):
            table = create_table_if_missing(
                location,
                schema,
                name=full_name,
                description=comment,
                storage_options=storage.options,
            )
        return _append(table, schema, rows)
    except BaseException:
        ctx.platform.governance.delete(SecurableType.TABLE, full_name)
        storage.discard(location)
        raise


# -- DROP -----------------------------------------------------------------------------------


def drop(ctx: Context, tree: exp.Drop) -> pa.Table:
    kind = str(tree.args.get("kind") or "").upper()
    securable_type = {"TABLE": SecurableType.TABLE, "VIEW": SecurableType.TABLE}.get(
        kind, SecurableType.FUNCTION if kind == "FUNCTION" else None
    )
    targets = tree.args.get("tables") or ([tree.this] if tree.this is not None else [])
    if securable_type is None or len(targets) != 1 or not isinstance(targets[0], exp.Table):
        raise InvalidRequest("Only DROP TABLE, DROP VIEW and DROP FUNCTION of one object.")
    full_name = qualify(table_parts(targets[0]))
    node = ctx.catalog.node(securable_type, full_name)
    if node is None:
        if tree.args.get("exists"):
            return pa.table({})
        raise NotFound(f"{kind.capitalize()} '{full_name}' does not exist.")
    if not (ctx.caller.is_admin or ctx.platform.authorizer.owns(ctx.caller, node)):
        raise PermissionDenied(f"Only the owner of {kind.lower()} '{full_name}' may drop it.")
    info = ctx.catalog.info(securable_type, full_name)
    is_view = info.properties.get("table_type") == "VIEW"
    if kind in ("TABLE", "VIEW") and is_view != (kind == "VIEW"):
        actual = "VIEW" if is_view else "TABLE"
        raise InvalidRequest(f"'{full_name}' is a {actual.lower()}; use DROP {actual}.")
    ctx.platform.governance.delete(securable_type, full_name)
    location = info.properties.get("storage_location")
    if location and ctx.platform.table_storage.is_managed(location):
        ctx.catalog.forget(location)
        ctx.platform.table_storage.discard(location)
    return pa.table({})
