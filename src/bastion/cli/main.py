"""Entry point of the ``bastion`` command.

The CLI is a thin HTTP client, and starts like one: each command group's module (and what it
needs — the HTTP client, the red-team stack, pyarrow for ``sql``) is imported only when that
group runs. ``bastion --help`` lists the groups from :data:`GROUPS` without importing them.
"""

from __future__ import annotations

import importlib
import os
from typing import Annotated, Any

# Plain help formatting: Rich's help renderer alone costs ~0.2 s per start, on every command.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer
from typer.core import TyperGroup

#: name → (module, Typer attribute, one-line help) of every command group, loaded on use.
GROUPS: dict[str, tuple[str, str, str]] = {
    "users": ("bastion.cli.identity", "users", "Users (SCIM)."),
    "groups": ("bastion.cli.identity", "groups", "Groups and their members."),
    "service-principals": ("bastion.cli.identity", "service_principals", "Service principals."),
    "tokens": ("bastion.cli.identity", "tokens", "Your personal access tokens."),
    "catalogs": ("bastion.cli.catalog", "catalogs", "Catalogs."),
    "schemas": ("bastion.cli.catalog", "schemas", "Schemas."),
    "tables": ("bastion.cli.tables", "tables", "Tables and views."),
    "grants": ("bastion.cli.catalog", "grants", "Grants on securables."),
    "audit": ("bastion.cli.catalog", "audit", "The audit trail (admins)."),
    "models": ("bastion.cli.registry", "models", "Registered models, versions and aliases."),
    "secrets": ("bastion.cli.registry", "secrets", "Secret scopes and keys (values never shown)."),
    "endpoints": ("bastion.cli.registry", "endpoints", "Serving endpoints and their permissions."),
    "agents": (
        "bastion.cli.registry",
        "agents",
        "Deploy registered models; point coding agents at Bastion.",
    ),
    "budgets": (
        "bastion.cli.budgets",
        "budgets",
        "Endpoint budgets: spend limits in tokens or cost, and their current spend.",
    ),
    "bundle": (
        "bastion.cli.bundle",
        "bundle",
        "Declare models, endpoints, grants and red-team gates in bastion.yml; deploy them.",
    ),
    "apps": ("bastion.cli.apps", "apps", "Apps behind Bastion's sign-in: deploy, start, logs."),
    "redteam": (
        "bastion.cli.redteam",
        "app",
        "Red teaming: scan endpoints, judge responses, diff scans, gate releases.",
    ),
}


class LazyGroup(TyperGroup):
    """A command group whose sub-groups are imported when one of them is used."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(g for g in GROUPS if g not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in GROUPS and cmd_name not in self.commands:
            module, attribute, _ = GROUPS[cmd_name]
            sub = getattr(importlib.import_module(module), attribute)
            command = typer.main.get_group(sub)
            command.name = cmd_name
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [
            (name, self.commands[name].get_short_help_str(80))
            for name in super().list_commands(ctx)
        ]
        rows += [(name, GROUPS[name][2]) for name in GROUPS if name not in self.commands]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


app = typer.Typer(
    cls=LazyGroup,
    help="Bastion: governed generative-AI operations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command("sql")
def sql(
    query: Annotated[str, typer.Argument(help="One Databricks SQL statement.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="A named parameter, name=value.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """Run a SQL statement with your own grants and print the rows."""
    from bastion.cli.sql import run_sql

    run_sql(query, param, as_json)


def _server_settings(host: str | None, port: int | None, home: str | None) -> Any:
    from bastion.settings import Settings

    overrides: dict[str, object] = {}
    if host:
        overrides["bind_host"] = host
    if port:
        overrides["port"] = port
    if home:
        overrides["home"] = home
    return Settings(**overrides)  # type: ignore[arg-type]


def _run_server(
    host: str | None,
    port: int | None,
    home: str | None,
    workers: int | None,
    *,
    join: bool,
    default_model: bool = True,
) -> None:
    from bastion.errors import BastionError
    from bastion.server.run import serve

    try:
        settings = _server_settings(host, port, home)
        serve(settings, default_model=default_model, workers=workers, join=join)
    except (ValueError, BastionError) as exc:  # settings, storage: one line, no traceback
        from bastion.cli.common import err_console

        message = exc.message if isinstance(exc, BastionError) else str(exc)
        err_console.print(f"[red]Error:[/red] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


_WORKERS_HELP = (
    "Server processes on the one port (default BASTION_WORKERS, else one per CPU core up to 4 "
    "with BASTION_REDIS_URL, 1 without)."
)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    home: Annotated[str | None, typer.Option(help="BASTION_HOME directory.")] = None,
    no_default_model: Annotated[
        bool, typer.Option("--no-default-model", help="Do not serve the embedded model.")
    ] = False,
    workers: Annotated[int | None, typer.Option(min=1, help=_WORKERS_HELP)] = None,
) -> None:
    """Initialise BASTION_HOME on first run (migrations, admin, default model) and serve."""
    _run_server(host, port, home, workers, join=False, default_model=not no_default_model)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    home: Annotated[str | None, typer.Option(help="BASTION_HOME directory.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help=_WORKERS_HELP)] = None,
) -> None:
    """Start a replica that joins an existing deployment (same BASTION_DATABASE_URL,
    BASTION_REDIS_URL and table storage): no migrations, no bootstrap, no model workers
    unless it becomes the leader."""
    _run_server(host, port, home, workers, join=True)


@app.command()
def init(
    template: Annotated[str, typer.Argument(help="The template: agent or app.")],
    directory: Annotated[str | None, typer.Argument(help="A new or empty folder.")] = None,
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder).")] = None,
) -> None:
    """Start a new project that is governed from its first commit."""
    from pathlib import Path

    from bastion.bundles.init import create_project
    from bastion.cli.common import err_console
    from bastion.errors import BastionError

    folder = Path(directory or template)
    try:
        written = create_project(template, folder, name)
    except BastionError as exc:
        err_console.print(f"[red]Error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    typer.echo(f"Created {len(written)} files in {folder}/. Next:")
    typer.echo(f"  cd {folder} && python -m pytest tests && bastion bundle deploy -t dev")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The server and the processes it supervises (admins): state, restarts, memory."""
    from bastion.cli.common import client, print_json, print_table

    with client() as c:
        body = c.request("GET", "/api/2.0/bastion/status")
    if as_json:
        print_json(body)
        return
    server = body["server"]
    typer.echo(
        f"server pid {server['pid']}, up {server['uptime_s']:.0f} s, "
        f"{server['rss_bytes'] / 2**20:.0f} MiB, home {server['home']}"
    )
    rows = [
        {**p, "memory": f"{p['rss_bytes'] / 2**20:.0f} MiB", "pid": p["pid"] or ""}
        for p in body["processes"]
    ]
    print_table(rows, ["kind", "key", "state", "pid", "restarts", "memory", "last_error"], False)


@app.command()
def configure(
    host: Annotated[str, typer.Option(help="Server URL, e.g. http://127.0.0.1:8000")],
    token: Annotated[
        str | None, typer.Option(help="Personal access token (prompted if omitted).")
    ] = None,
    profile: Annotated[str, typer.Option()] = "DEFAULT",
) -> None:
    """Save a connection profile in ~/.bastion/config."""
    from bastion.cli.common import read_secret
    from bastion.client.profiles import Profile, save_profile

    if token is None:
        token = read_secret("Token", confirm=False)
    path = save_profile(Profile(host.rstrip("/"), token), profile)
    typer.echo(f"Saved profile {profile!r} to {path}.")


if __name__ == "__main__":
    app()
