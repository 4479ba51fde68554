"""Statements sqlglot does not model, matched whole by anchored patterns.

SHOW CATALOGS|SCHEMAS|TABLES|FUNCTIONS|GRANTS, DESCRIBE [HISTORY], GRANT/REVOKE and the row
filter and column mask forms of ALTER TABLE. A pattern must match the entire statement, so
nothing can be appended to one (a second statement, say) without the text falling through to
the parser, which refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from bastion.errors import InvalidRequest, NotFound, PermissionDenied
from bastion.governance.privileges import Privilege, parse_privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GrantChange
from bastion.query import metadata
from bastion.query.context import Context
from bastion.query.names import DEFAULT_CATALOG, DOTTED, PART, qualify, split_dotted, unquote

_LIKE = r"(?:\s+LIKE\s+'(?P<like>[^']*)')?"
_IN = rf"(?:\s+(?:IN|FROM)\s+(?P<container>{DOTTED}))?"
_TYPE = r"CATALOG|SCHEMA|DATABASE|TABLE|VIEW|FUNCTION|REGISTERED\s+MODEL|MODEL|VOLUME"
_PRINCIPAL = r"`(?:[^`]|``)+`|[A-Za-z0-9_.@+\-]+"
_LEADING_COMMENTS = re.compile(r"^(?:\s*--[^\n]*\n|\s*/\*.*?\*/)*\s*", re.S)


@dataclass(frozen=True)
class Command:
    statement_type: str
    pattern: re.Pattern[str]
    handler: Callable[[Context, dict[str, str | None]], pa.Table]


def _strip(text: str) -> str:
    text = _LEADING_COMMENTS.sub("", text).strip()
    return text[:-1].rstrip() if text.endswith(";") else text


def match(text: str) -> tuple[Command, dict[str, str | None]] | None:
    """The command ``text`` is, with its parts, or ``None`` if it is not one of these."""
    stripped = _strip(text)
    for command in COMMANDS:
        found = command.pattern.match(stripped)
        if found:
            return command, found.groupdict()
    return None


def _type_of(text: str | None, default: SecurableType = SecurableType.TABLE) -> SecurableType:
    if text is None:
        return default
    key = " ".join(text.upper().split())
    return {
        "CATALOG": SecurableType.CATALOG,
        "SCHEMA": SecurableType.SCHEMA,
        "DATABASE": SecurableType.SCHEMA,
        "TABLE": SecurableType.TABLE,
        "VIEW": SecurableType.TABLE,
        "FUNCTION": SecurableType.FUNCTION,
        "MODEL": SecurableType.MODEL,
        "REGISTERED MODEL": SecurableType.MODEL,
        "VOLUME": SecurableType.VOLUME,
    }[key]


def _full_name(securable_type: SecurableType, text: str) -> str:
    parts = split_dotted(text)
    return qualify(parts, depth=max(securable_type.depth, 1))


def _columns(text: str | None) -> list[str]:
    if not text or not text.strip():
        return []
    return [unquote(c).lower() for c in text.split(",")]


# -- SHOW / DESCRIBE ------------------------------------------------------------------------


def _show_catalogs(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    return metadata.show_catalogs(ctx.platform, ctx.caller, metadata.check_like(m["like"]))


def _show_schemas(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    catalog = _full_name(SecurableType.CATALOG, m["container"] or DEFAULT_CATALOG)
    return metadata.show_schemas(ctx.platform, ctx.catalog, ctx.caller, catalog, m["like"])


def _show_tables(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    schema = _full_name(SecurableType.SCHEMA, m["container"] or "default")
    return metadata.show_tables(ctx.platform, ctx.catalog, ctx.caller, schema, m["like"])


def _show_functions(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    schema = _full_name(SecurableType.SCHEMA, m["container"] or "default")
    return metadata.show_functions(ctx.platform, ctx.catalog, ctx.caller, schema, m["like"])


def _show_grants(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    kind = _type_of(m["type"])
    assert m["name"] is not None
    principal = unquote(m["principal"]) if m["principal"] else None
    return metadata.show_grants(
        ctx.platform, ctx.catalog, ctx.caller, kind, _full_name(kind, m["name"]), principal
    )


def _history(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    assert m["name"] is not None
    full_name = _full_name(SecurableType.TABLE, m["name"])
    if ctx.catalog.node(SecurableType.TABLE, full_name) is None:
        raise NotFound(f"Table '{full_name}' does not exist.")
    ctx.platform.authorizer.require(ctx.caller, Privilege.SELECT, SecurableType.TABLE, full_name)
    info = ctx.catalog.info(SecurableType.TABLE, full_name)
    limit = int(m["limit"] or 0) or None
    if limit is not None and not 1 <= limit <= 100_000:
        raise InvalidRequest("DESCRIBE HISTORY ... LIMIT takes 1 to 100000.")
    return metadata.describe_history(info, limit, ctx.platform.table_storage)


def _describe(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    assert m["name"] is not None
    full_name = _full_name(SecurableType.TABLE, m["name"])
    if ctx.catalog.node(SecurableType.TABLE, full_name) is None:
        raise NotFound(f"Table or view '{full_name}' does not exist.")
    ctx.platform.authorizer.require(ctx.caller, Privilege.SELECT, SecurableType.TABLE, full_name)
    info = ctx.catalog.info(SecurableType.TABLE, full_name)
    return metadata.describe_table(info, extended=bool(m["extended"]))


# -- GRANT / REVOKE -------------------------------------------------------------------------


def _grant(ctx: Context, m: dict[str, str | None], *, revoke: bool) -> pa.Table:
    kind = _type_of(m["type"])
    assert m["name"] is not None and m["privileges"] is not None and m["principal"] is not None
    full_name = _full_name(kind, m["name"])
    privileges = tuple(parse_privilege(p, kind) for p in m["privileges"].split(","))
    node = ctx.catalog.node(kind, full_name)
    if node is None:
        raise NotFound(f"{kind.label.capitalize()} '{full_name}' does not exist.")
    if not ctx.platform.authorizer.can_manage_grants(ctx.caller, node):
        raise PermissionDenied(
            f"User {ctx.caller.name} may not manage grants on {kind.label} '{full_name}'; "
            "that needs ownership or MANAGE."
        )
    name = unquote(m["principal"])
    who = ctx.platform.authenticator.principal(name)
    if who is None:
        raise InvalidRequest(f"Principal {name!r} does not exist.")
    change = (
        GrantChange(who.id, remove=privileges) if revoke else GrantChange(who.id, add=privileges)
    )
    ctx.platform.governance.update_grants(node.id, [change])
    return pa.table({})


# -- row filters and column masks -----------------------------------------------------------


def _managed_table(ctx: Context, text: str | None) -> tuple[str, dict[str, object], list[str]]:
    """The table to alter, after checking the caller owns it or holds MANAGE."""
    assert text is not None
    full_name = _full_name(SecurableType.TABLE, text)
    node = ctx.catalog.node(SecurableType.TABLE, full_name)
    if node is None:
        raise NotFound(f"Table '{full_name}' does not exist.")
    if not ctx.platform.authorizer.can_manage_grants(ctx.caller, node):
        raise PermissionDenied(
            f"User {ctx.caller.name} may not set row filters or column masks on "
            f"'{full_name}'; that needs ownership or MANAGE."
        )
    info = ctx.catalog.info(SecurableType.TABLE, full_name)
    if info.properties.get("table_type") == "VIEW":
        raise InvalidRequest(f"'{full_name}' is a view; row filters and masks apply to tables.")
    columns = [c["name"] for c in info.properties.get("columns", [])]
    return full_name, info.properties, columns


def _executable_function(ctx: Context, text: str | None, arity: int) -> str:
    assert text is not None
    full_name = _full_name(SecurableType.FUNCTION, text)
    if ctx.catalog.node(SecurableType.FUNCTION, full_name) is None:
        raise NotFound(f"Function '{full_name}' does not exist.")
    ctx.platform.authorizer.require(
        ctx.caller, Privilege.EXECUTE, SecurableType.FUNCTION, full_name
    )
    params = ctx.catalog.info(SecurableType.FUNCTION, full_name).properties.get("parameters", [])
    if len(params) != arity:
        raise InvalidRequest(
            f"Function '{full_name}' takes {len(params)} argument(s) but {arity} column(s) "
            "were given."
        )
    return full_name


def _check_columns(full_name: str, wanted: list[str], columns: list[str]) -> None:
    unknown = [c for c in wanted if c not in columns]
    if unknown:
        raise InvalidRequest(f"Table '{full_name}' has no column(s) {', '.join(unknown)}.")


def _set_row_filter(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    full_name, _, columns = _managed_table(ctx, m["table"])
    wanted = _columns(m["columns"])
    _check_columns(full_name, wanted, columns)
    function = _executable_function(ctx, m["function"], len(wanted))
    ctx.platform.governance.update(
        SecurableType.TABLE,
        full_name,
        updated_by=ctx.caller.name,
        properties={"row_filter": {"function": function, "columns": wanted}},
    )
    return pa.table({})


def _drop_row_filter(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    full_name, _, _ = _managed_table(ctx, m["table"])
    ctx.platform.governance.update(
        SecurableType.TABLE, full_name, updated_by=ctx.caller.name, properties={"row_filter": None}
    )
    return pa.table({})


def _set_mask(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    full_name, props, columns = _managed_table(ctx, m["table"])
    assert m["column"] is not None
    column = unquote(m["column"]).lower()
    using = _columns(m["using"])
    _check_columns(full_name, [column, *using], columns)
    function = _executable_function(ctx, m["function"], 1 + len(using))
    masks = dict(props.get("column_masks") or {})  # type: ignore[call-overload]
    masks[column] = {"function": function, "using_columns": using}
    ctx.platform.governance.update(
        SecurableType.TABLE,
        full_name,
        updated_by=ctx.caller.name,
        properties={"column_masks": masks},
    )
    return pa.table({})


def _drop_mask(ctx: Context, m: dict[str, str | None]) -> pa.Table:
    full_name, props, _ = _managed_table(ctx, m["table"])
    assert m["column"] is not None
    masks = dict(props.get("column_masks") or {})  # type: ignore[call-overload]
    masks.pop(unquote(m["column"]).lower(), None)
    ctx.platform.governance.update(
        SecurableType.TABLE,
        full_name,
        updated_by=ctx.caller.name,
        properties={"column_masks": masks},
    )
    return pa.table({})


def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(r"^" + text + r"$", re.I | re.S)


_PRIVILEGES = r"(?P<privileges>[A-Za-z_ ]+?(?:\s*,\s*[A-Za-z_ ]+)*?)"

COMMANDS: tuple[Command, ...] = (
    Command("SHOW", _pattern(r"SHOW\s+CATALOGS" + _LIKE), _show_catalogs),
    Command("SHOW", _pattern(r"SHOW\s+(?:SCHEMAS|DATABASES)" + _IN + _LIKE), _show_schemas),
    Command("SHOW", _pattern(r"SHOW\s+TABLES" + _IN + _LIKE), _show_tables),
    Command("SHOW", _pattern(r"SHOW\s+(?:USER\s+)?FUNCTIONS" + _IN + _LIKE), _show_functions),
    Command(
        "SHOW",
        _pattern(
            rf"SHOW\s+GRANTS?(?:\s+(?P<principal>{_PRINCIPAL}))??\s+ON\s+(?P<type>{_TYPE})"
            rf"\s+(?P<name>{DOTTED})"
        ),
        _show_grants,
    ),
    Command(
        "DESCRIBE",
        _pattern(
            rf"DESC(?:RIBE)?\s+HISTORY\s+(?P<name>{DOTTED})(?:\s+LIMIT\s+(?P<limit>[0-9]{{1,9}}))?"
        ),
        _history,
    ),
    Command(
        "DESCRIBE",
        _pattern(
            rf"DESC(?:RIBE)?(?:\s+TABLE)?(?:\s+(?P<extended>EXTENDED|FORMATTED))?"
            rf"\s+(?P<name>{DOTTED})"
        ),
        _describe,
    ),
    Command(
        "GRANT",
        _pattern(
            rf"GRANT\s+{_PRIVILEGES}\s+ON\s+(?:(?P<type>{_TYPE})\s+)?(?P<name>{DOTTED})"
            rf"\s+TO\s+(?P<principal>{_PRINCIPAL})"
        ),
        lambda ctx, m: _grant(ctx, m, revoke=False),
    ),
    Command(
        "REVOKE",
        _pattern(
            rf"REVOKE\s+{_PRIVILEGES}\s+ON\s+(?:(?P<type>{_TYPE})\s+)?(?P<name>{DOTTED})"
            rf"\s+FROM\s+(?P<principal>{_PRINCIPAL})"
        ),
        lambda ctx, m: _grant(ctx, m, revoke=True),
    ),
    Command(
        "ALTER",
        _pattern(
            rf"ALTER\s+TABLE\s+(?P<table>{DOTTED})\s+SET\s+ROW\s+FILTER\s+"
            rf"(?P<function>{DOTTED})\s+ON\s*\((?P<columns>[^()]*)\)"
        ),
        _set_row_filter,
    ),
    Command(
        "ALTER",
        _pattern(rf"ALTER\s+TABLE\s+(?P<table>{DOTTED})\s+DROP\s+ROW\s+FILTER"),
        _drop_row_filter,
    ),
    Command(
        "ALTER",
        _pattern(
            rf"ALTER\s+TABLE\s+(?P<table>{DOTTED})\s+ALTER\s+COLUMN\s+(?P<column>{PART})\s+"
            rf"SET\s+MASK\s+(?P<function>{DOTTED})"
            rf"(?:\s+USING\s+COLUMNS\s*\((?P<using>[^()]*)\))?"
        ),
        _set_mask,
    ),
    Command(
        "ALTER",
        _pattern(
            rf"ALTER\s+TABLE\s+(?P<table>{DOTTED})\s+ALTER\s+COLUMN\s+(?P<column>{PART})\s+"
            r"DROP\s+MASK"
        ),
        _drop_mask,
    ),
)
