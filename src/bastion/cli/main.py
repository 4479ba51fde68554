"""Entry point of the ``bastion`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli import catalog, identity, redteam, registry, tables
from bastion.cli.common import err_console, read_secret
from bastion.cli.sql import run_sql
from bastion.client.profiles import Profile, save_profile

app = typer.Typer(
    help="Bastion: governed generative-AI operations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(identity.users, name="users")
app.add_typer(identity.groups, name="groups")
app.add_typer(identity.service_principals, name="service-principals")
app.add_typer(identity.tokens, name="tokens")
app.add_typer(catalog.catalogs, name="catalogs")
app.add_typer(catalog.schemas, name="schemas")
app.add_typer(tables.tables, name="tables")
app.add_typer(catalog.grants, name="grants")
app.add_typer(catalog.audit, name="audit")
app.add_typer(registry.models, name="models")
app.add_typer(registry.secrets, name="secrets")
app.add_typer(registry.endpoints, name="endpoints")
app.add_typer(registry.agents, name="agents")
app.add_typer(redteam.app, name="redteam")
app.command("sql")(run_sql)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    home: Annotated[str | None, typer.Option(help="BASTION_HOME directory.")] = None,
    no_default_model: Annotated[
        bool, typer.Option("--no-default-model", help="Do not serve the embedded model.")
    ] = False,
) -> None:
    """Initialise BASTION_HOME on first run and start the server."""
    from bastion.server.run import serve
    from bastion.settings import Settings

    overrides: dict[str, object] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if home:
        overrides["home"] = home
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        serve(settings, default_model=not no_default_model)
    except ValueError as exc:
        err_console.print(f"[red]Error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None


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
    if token is None:
        token = read_secret("Token", confirm=False)
    path = save_profile(Profile(host.rstrip("/"), token), profile)
    typer.echo(f"Saved profile {profile!r} to {path}.")


if __name__ == "__main__":
    app()
