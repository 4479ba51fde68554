"""``bastion sql "<query>"``: run one statement as yourself and print the result."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from bastion.cli.common import console, err_console
from bastion.client.profiles import load_profile


def run_sql(
    query: Annotated[str, typer.Argument(help="One Databricks SQL statement.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="A named parameter, name=value.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """Run a SQL statement with your own grants and print the rows."""
    from bastion import sql as dbapi  # pyarrow, only when a statement runs

    parameters: dict[str, str] = {}
    for item in param or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            err_console.print(f"[red]Error:[/red] --param {item!r} is not name=value.")
            raise typer.Exit(2)
        parameters[name] = value
    profile = load_profile()
    if not profile.token:
        err_console.print(
            "[red]Error:[/red] no token: run `bastion configure` or set BASTION_TOKEN."
        )
        raise typer.Exit(1)
    try:
        with (
            dbapi.connect(server_hostname=profile.host, access_token=profile.token) as conn,
            conn.cursor() as cursor,
        ):
            cursor.execute(query, parameters or None)
            names = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall()
    except dbapi.Error as exc:
        err_console.print(f"[red]Error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(
            json.dumps([dict(zip(names, r, strict=True)) for r in rows], default=str)
        )
        return
    table = Table(*names)
    for row in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console.print(table)
    console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")
