"""``bastion bundle validate|plan|deploy|destroy|summary|schema``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli.common import client, console, err_console, print_json

if TYPE_CHECKING:
    from bastion.bundles.load import ResolvedBundle
    from bastion.bundles.resources import Action
    from bastion.client.http import BastionClient

bundle = typer.Typer(
    help="Declare catalogs, models, endpoints, grants and red-team gates in bastion.yml; deploy.",
    no_args_is_help=True,
)

FileOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="The bundle file (default: bastion.yml or databricks.yml)."),
]
TargetOption = Annotated[str | None, typer.Option("--target", "-t", help="The target to use.")]
VarOption = Annotated[
    list[str] | None, typer.Option("--var", help="A variable's value, name=value (repeatable).")
]
OutputOption = Annotated[str, typer.Option("--output", "-o", help="text or json.")]
SYMBOLS = {"create": "+", "update": "~", "delete": "-", "run": ">"}


def _vars(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            err_console.print(f"[red]Error:[/red] --var {item!r} is not name=value.")
            raise typer.Exit(1)
        out[name] = value
    return out


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]Error:[/red] {message}", highlight=False)
    return typer.Exit(1)


@contextmanager
def _loaded(
    file: Path | None, target: str | None, variables: list[str] | None, *, offline: bool = False
) -> Iterator[tuple[ResolvedBundle, BastionClient | None]]:
    """The bundle resolved for the current user (who the server says the profile is)."""
    from bastion.bundles.errors import BundleInvalid
    from bastion.bundles.load import load_bundle

    if offline:
        try:
            yield (
                load_bundle(file, target=target, user_name="user", variables=_vars(variables)),
                None,
            )
        except BundleInvalid as exc:
            sys.stderr.write(exc.message + "\n")
            raise typer.Exit(1) from None
        return
    with client() as c:
        me = c.me()
        user = str(me.get("userName") or me.get("applicationId") or "user")
        try:
            resolved = load_bundle(file, target=target, user_name=user, variables=_vars(variables))
        except BundleInvalid as exc:
            sys.stderr.write(exc.message + "\n")
            raise typer.Exit(1) from None
        yield resolved, c


@bundle.command("validate")
def validate(
    file: FileOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Check the file only, without asking the server.")
    ] = False,
) -> None:
    """Load, merge and check the bundle; every problem with its path and a fix hint."""
    with _loaded(file, target, var, offline=offline) as (resolved, _client):
        for warning in resolved.warnings:
            err_console.print(f"[yellow]Warning:[/yellow] {warning}", highlight=False)
        counts = {
            kind: len(items) for kind, items in resolved.resources.model_dump().items() if items
        }
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "no resources"
        where = f"Bundle '{resolved.name}' target '{resolved.target or 'default'}'"
        console.print(f"{where} is valid: {summary}.", highlight=False)


def _render_plan(actions: list[Action]) -> None:
    if not actions:
        console.print("No changes. The deployed resources match the bundle.", highlight=False)
        return
    for action in actions:
        detail = (
            f" ({', '.join(action.changes)})" if action.op == "update" and action.changes else ""
        )
        console.print(
            f"  {SYMBOLS[action.op]} {action.op:<6} {action.address}: {action.name}{detail}",
            highlight=False,
            markup=False,
        )
    counts = {op: sum(1 for a in actions if a.op == op) for op in SYMBOLS}
    console.print(
        "Plan: " + ", ".join(f"{n} to {op}" for op, n in counts.items() if n) + ".",
        highlight=False,
    )


@bundle.command("plan")
def plan_command(
    file: FileOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    output: OutputOption = "text",
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 0: no changes, 2: changes, 1: error."),
    ] = False,
) -> None:
    """What a deploy would create, update (which fields) and delete."""
    from bastion.bundles.engine import plan
    from bastion.errors import BastionError

    with _loaded(file, target, var) as (resolved, c):
        assert c is not None
        try:
            planned = plan(c, resolved)
        except BastionError as exc:
            raise _fail(exc.message) from None
    if output == "json":
        print_json(planned.as_dict())
    else:
        for conflict in planned.foreign:
            err_console.print(
                f"[red]Conflict:[/red] exists, not created by this bundle: {conflict}",
                highlight=False,
            )
        _render_plan(planned.actions)
    if planned.foreign:
        raise typer.Exit(1)
    if detailed_exitcode and planned.changes:
        raise typer.Exit(2)


class _Progress:
    """A progress bar on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.live:
            from rich.progress import Progress

            self._progress = Progress(console=err_console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("deploying", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def say(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def step(self, action: Action) -> None:
        text = f"{SYMBOLS[action.op]} {action.op} {action.address}: {action.name}"
        if self._progress is not None:
            self._progress.update(self._task, description=text)
        self.say(text)


@bundle.command("deploy")
def deploy_command(
    file: FileOption = None, target: TargetOption = None, var: VarOption = None
) -> None:
    """Create or update everything the bundle declares, in order, under a lock."""
    from bastion.bundles.engine import deploy
    from bastion.errors import BastionError

    with _loaded(file, target, var) as (resolved, c):
        assert c is not None
        for warning in resolved.warnings:
            err_console.print(f"[yellow]Warning:[/yellow] {warning}", highlight=False)
        try:
            with _Progress() as progress:
                planned, outcome = deploy(c, resolved, say=progress.say, step=progress.step)
        except BastionError as exc:
            raise _fail(exc.message) from None
    if outcome.failed is not None:
        applied = ", ".join(a.address for a in outcome.applied) or "nothing"
        not_applied = ", ".join(a.address for a in [outcome.failed, *outcome.skipped])
        raise _fail(
            f"{outcome.failed.op} {outcome.failed.address} failed: {outcome.error}\n"
            f"Applied: {applied}. Not applied: {not_applied}. Fix it and deploy again to finish."
        )
    if not planned.actions:
        console.print("No changes. The deployed resources match the bundle.", highlight=False)
    else:
        console.print(
            f"Deployed bundle '{resolved.name}' to '{resolved.target or 'default'}': "
            f"{len(outcome.applied)} change(s).",
            highlight=False,
        )


@bundle.command("destroy")
def destroy_command(
    file: FileOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")
    ] = False,
) -> None:
    """Delete what this bundle created (and nothing else), newest first."""
    from bastion.bundles.engine import destroy, read_state
    from bastion.errors import BastionError

    with _loaded(file, target, var) as (resolved, c):
        assert c is not None
        state, _ = read_state(c, resolved)
        entries = state.get("resources") or {}
        if not entries:
            console.print("Nothing to destroy: this target has no deployed resources.")
            return
        if not auto_approve:
            if not sys.stdin.isatty():
                raise _fail("destroy needs --auto-approve when not run on a terminal.")
            names = ", ".join(f"{a} ({e['name']})" for a, e in entries.items())
            typer.confirm(f"Destroy {names}?", abort=True)
        try:
            with _Progress() as progress:
                outcome = destroy(c, resolved, say=progress.say, step=progress.step)
        except BastionError as exc:
            raise _fail(exc.message) from None
    if outcome.failed is not None:
        raise _fail(
            f"delete {outcome.failed.address} failed: {outcome.error}; "
            f"{len(outcome.applied)} deleted before it. Run destroy again to finish."
        )
    console.print(f"Destroyed {len(outcome.applied)} resource(s).", highlight=False)


@bundle.command("summary")
def summary(
    file: FileOption = None,
    target: TargetOption = None,
    var: VarOption = None,
    output: OutputOption = "text",
) -> None:
    """What is deployed for this bundle and target, from the shared state."""
    from bastion.bundles.engine import read_state

    with _loaded(file, target, var) as (resolved, c):
        assert c is not None
        state, version = read_state(c, resolved)
    rows = [
        {"resource": address, "name": entry.get("name"), "type": entry.get("type")}
        for address, entry in sorted((state.get("resources") or {}).items())
    ]
    if output == "json":
        print_json(
            {
                "bundle": resolved.name,
                "target": resolved.target,
                "version": version,
                "deployed_by": state.get("deployed_by"),
                "resources": rows,
            }
        )
        return
    console.print(
        f"Bundle '{resolved.name}', target '{resolved.target or 'default'}' (state version "
        f"{version}, last deployed by {state.get('deployed_by') or 'nobody yet'}):",
        highlight=False,
    )
    for row in rows:
        console.print(f"  {row['resource']}: {row['name']}", highlight=False, markup=False)


@bundle.command("schema")
def schema() -> None:
    """The JSON Schema of bastion.yml, for editor completion."""
    from bastion.bundles.model import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
