"""``bastion apps``: create, deploy (a local folder is uploaded as a tarball), start, stop,
get, list, logs (``--follow``), delete — thin commands over the REST API."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from bastion.cli.common import client, err_console, print_json, print_table

apps = typer.Typer(help="Apps behind Bastion's sign-in (docs/apps.md).", no_args_is_help=True)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _path(name: str, suffix: str = "") -> str:
    return f"/api/2.0/apps/{quote(name, safe='')}{suffix}"


@apps.command("create")
def create(
    name: str,
    description: Annotated[str | None, typer.Option()] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="A user API scope its users' tokens get; repeatable."),
    ] = None,
    resources: Annotated[
        Path | None, typer.Option(help="JSON file with a list of resources.")
    ] = None,
) -> None:
    """Create an app (and its service principal)."""
    body: dict[str, Any] = {"name": name}
    if description:
        body["description"] = description
    if scope:
        body["user_api_scopes"] = scope
    if resources is not None:
        import json

        body["resources"] = json.loads(resources.read_text())
    with client() as c:
        print_json(c.request("POST", "/api/2.0/apps", json=body))


@apps.command("list")
def list_apps(as_json: AsJson = False) -> None:
    with client() as c:
        body = c.request("GET", "/api/2.0/apps")
    rows = [
        {
            "name": a["name"],
            "state": a["app_status"]["state"],
            "compute": a["compute_status"]["state"],
            "url": a["url"],
            "scopes": ",".join(a["user_api_scopes"]),
            "permission": a.get("permission_level"),
        }
        for a in body["apps"]
    ]
    print_table(rows, ["name", "state", "compute", "url", "scopes", "permission"], as_json)


@apps.command("get")
def get(name: str) -> None:
    with client() as c:
        print_json(c.request("GET", _path(name)))


@apps.command("delete")
def delete(name: str) -> None:
    """Delete the app, its deployments, logs and service principal."""
    with client() as c:
        c.request("DELETE", _path(name))
    typer.echo(f"Deleted app {name}.")


@apps.command("start")
def start(name: str) -> None:
    with client() as c:
        body = c.request("POST", _path(name, "/start"))
    typer.echo(f"{name}: {body['app_status']['state']}")


@apps.command("stop")
def stop(name: str) -> None:
    with client() as c:
        body = c.request("POST", _path(name, "/stop"))
    typer.echo(f"{name}: {body['app_status']['state']}")


@apps.command("deploy")
def deploy(
    name: str,
    source_code_path: Annotated[
        str,
        typer.Option(
            "--source-code-path",
            help="A local folder (uploaded as a tarball to your staging area), or a source "
            "the server resolves: staging:<path> or a folder under BASTION_APP_SOURCE_ROOTS.",
        ),
    ] = ".",
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait for it to run.")] = False,
) -> None:
    """Deploy a new version of the app and start it."""
    from bastion.client.apps import upload_source, wait_for_deployment, wait_while_deploying

    with client() as c:
        source = source_code_path
        local = Path(source_code_path)
        if not source.startswith("staging:") and local.is_dir():
            source, size = upload_source(c, name, local)
            err_console.print(f"Uploaded {local} ({size} bytes) as {source}.")
        deployment = c.request(
            "POST", _path(name, "/deployments"), json={"source_code_path": source}
        )
        if no_wait:
            print_json(deployment)
            return
        deployment = wait_for_deployment(c, name, deployment)
        if deployment["status"]["state"] != "SUCCEEDED":
            err_console.print(f"[red]Deployment failed:[/red] {deployment['status']['message']}")
            raise typer.Exit(1)
        app = wait_while_deploying(c, name)
    typer.echo(f"{name}: {app['app_status']['state']} at {c.host}{app['url']}")


@apps.command("logs")
def logs(
    name: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail_bytes: Annotated[
        int, typer.Option("--tail-bytes", help="Start this far from the end.")
    ] = 65536,
) -> None:
    """The app's output (and its installs)."""
    with client() as c:
        offset = -tail_bytes
        while True:
            body = c.request(
                "GET", _path(name, "/logs"), params={"offset": offset, "max_bytes": 1024 * 1024}
            )
            if body["content"]:
                typer.echo(body["content"], nl=False)
            offset = body["next_offset"]
            if not follow:
                return
            if not body["content"]:
                time.sleep(1)
