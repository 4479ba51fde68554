"""Shared CLI plumbing: one client per invocation, errors as one line and exit 1."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from bastion.errors import BastionError

if TYPE_CHECKING:
    from bastion.client import BastionClient

console = Console()
err_console = Console(stderr=True)


@contextmanager
def client() -> Iterator[BastionClient]:
    """A client from the active profile; a Bastion error becomes one line on stderr, exit 1."""
    from bastion.client.http import BastionClient  # the HTTP stack, only for commands that call

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


def read_secret(label: str, *, confirm: bool = True) -> str:
    """A password or token: prompted (hidden, confirmed) on a terminal, else read as one line
    from standard input, so that pipes and scripts work (``echo $PW | bastion ...``)."""
    if sys.stdin.isatty():
        return str(typer.prompt(label, hide_input=True, confirmation_prompt=confirm))
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        err_console.print(f"[red]Error:[/red] no {label.lower()} on standard input.")
        raise typer.Exit(1)
    return value


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value))


JsonOption = Callable[..., Any]
