"""Shared CLI plumbing: one client per invocation, errors as one line and exit 1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bastion.client import BastionClient
from bastion.errors import BastionError

console = Console()
err_console = Console(stderr=True)


@contextmanager
def client() -> Iterator[BastionClient]:
    """A client from the active profile; a Bastion error becomes one line on stderr, exit 1."""
    try:
        with BastionClient.from_profile() as c:
            yield c
    except BastionError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(list(rows)))
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value))


JsonOption = Callable[..., Any]
