"""``bastion tables list|get|describe|history``: the tables you may see, as yourself."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.common import client, err_console, print_json, print_table

tables = typer.Typer(help="Tables and views.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _schema_parts(full_name: str) -> tuple[str, str]:
    catalog, _, schema = full_name.partition(".")
    if not catalog or not schema or "." in schema:
        err_console.print("[red]Error:[/red] give the schema as catalog.schema.")
        raise typer.Exit(1)
    return catalog, schema


@tables.command("list")
def tables_list(
    schema: Annotated[str, typer.Argument(help="catalog.schema")], as_json: AsJson = False
) -> None:
    """The tables and views of a schema that you hold a privilege on."""
    catalog, name = _schema_parts(schema)
    with client() as c:
        rows = c.list_tables(catalog, name)
    print_table(rows, ["full_name", "table_type", "owner", "comment"], as_json)


@tables.command("get")
def tables_get(full_name: Annotated[str, typer.Argument(help="catalog.schema.table")]) -> None:
    """A table's metadata (needs SELECT on it)."""
    with client() as c:
        print_json(c.get_table(full_name))


@tables.command("describe")
def tables_describe(
    full_name: Annotated[str, typer.Argument(help="catalog.schema.table")], as_json: AsJson = False
) -> None:
    """Columns, types and comments."""
    with client() as c:
        table = c.get_table(full_name)
    rows = [
        {**col, "nullable": "yes" if col.get("nullable", True) else "no"}
        for col in table.get("columns") or []
    ]
    print_table(rows, ["name", "type_text", "nullable", "comment"], as_json)


@tables.command("history")
def tables_history(
    full_name: Annotated[str, typer.Argument(help="catalog.schema.table")],
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Newest commits to show.")] = 20,
    as_json: AsJson = False,
) -> None:
    """The table's Delta commits, newest first (``DESCRIBE HISTORY``; needs SELECT)."""
    quoted = ".".join(f"`{part.replace('`', '``')}`" for part in full_name.split("."))
    with client() as c:
        columns, values = c.statement(f"DESCRIBE HISTORY {quoted} LIMIT {limit}")
    rows = [dict(zip(columns, row, strict=True)) for row in values]
    print_table(rows, ["version", "timestamp", "operation", "operationMetrics"], as_json)
