"""``bastion catalogs|schemas|grants|audit``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bastion.cli.common import client, print_json, print_table

catalogs = typer.Typer(help="Catalogs.", no_args_is_help=True)
schemas = typer.Typer(help="Schemas.", no_args_is_help=True)
grants = typer.Typer(help="Grants on securables.", no_args_is_help=True)
audit = typer.Typer(help="The audit trail (admins).", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@catalogs.command("list")
def catalogs_list(as_json: AsJson = False) -> None:
    with client() as c:
        print_table(c.list_catalogs(), ["name", "owner", "comment"], as_json)


@catalogs.command("create")
def catalogs_create(name: str, comment: Annotated[str | None, typer.Option()] = None) -> None:
    with client() as c:
        print_json(c.create_catalog(name, comment))


@catalogs.command("get")
def catalogs_get(name: str) -> None:
    with client() as c:
        print_json(c.get_catalog(name))


@catalogs.command("delete")
def catalogs_delete(name: str, force: Annotated[bool, typer.Option()] = False) -> None:
    with client() as c:
        c.delete_catalog(name, force)


@schemas.command("list")
def schemas_list(catalog: str, as_json: AsJson = False) -> None:
    with client() as c:
        print_table(c.list_schemas(catalog), ["full_name", "owner", "comment"], as_json)


@schemas.command("create")
def schemas_create(full_name: str, comment: Annotated[str | None, typer.Option()] = None) -> None:
    catalog, _, name = full_name.partition(".")
    if not name:
        typer.echo("Error: give the schema as catalog.schema.", err=True)
        raise typer.Exit(1)
    with client() as c:
        print_json(c.create_schema(catalog, name, comment))


@schemas.command("get")
def schemas_get(full_name: str) -> None:
    with client() as c:
        print_json(c.get_schema(full_name))


@schemas.command("delete")
def schemas_delete(full_name: str, force: Annotated[bool, typer.Option()] = False) -> None:
    with client() as c:
        c.delete_schema(full_name, force)


def _granted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``privilege_assignments`` with the privileges as one readable cell."""
    return [{**r, "privileges": ", ".join(r.get("privileges") or [])} for r in rows]


@grants.command("get")
def grants_get(securable_type: str, full_name: str, as_json: AsJson = False) -> None:
    with client() as c:
        rows = c.get_permissions(securable_type, full_name)
        print_table(rows if as_json else _granted(rows), ["principal", "privileges"], as_json)


@grants.command("effective")
def grants_effective(
    securable_type: str,
    full_name: str,
    principal: Annotated[str | None, typer.Option()] = None,
    as_json: AsJson = False,
) -> None:
    with client() as c:
        rows = c.get_effective_permissions(securable_type, full_name, principal)
    if as_json:
        print_table(rows, ["principal", "privileges"], as_json)
        return
    flat = [
        {
            "principal": row["principal"],
            "privilege": grant["privilege"],
            "inherited from": (
                f"{grant['inherited_from_type'].lower()} {grant['inherited_from_name']}"
                if grant.get("inherited_from_name")
                else ""
            ),
        }
        for row in rows
        for grant in row.get("privileges") or []
    ]
    print_table(flat, ["principal", "privilege", "inherited from"], False)


@grants.command("update")
def grants_update(
    securable_type: str,
    full_name: str,
    principal: Annotated[str, typer.Option(help="User name, group or application id.")],
    add: Annotated[list[str] | None, typer.Option(help="Privilege to grant.")] = None,
    remove: Annotated[list[str] | None, typer.Option(help="Privilege to revoke.")] = None,
) -> None:
    with client() as c:
        rows = c.update_permissions(securable_type, full_name, principal, add, remove)
        print_table(_granted(rows), ["principal", "privileges"], False)


@audit.command("list")
def audit_list(
    action: Annotated[str | None, typer.Option()] = None,
    user: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    as_json: AsJson = False,
) -> None:
    with client() as c:
        rows = c.audit_events(action_name=action, user=user, limit=limit)
        for row in rows:
            row["user"] = (row.get("user_identity") or {}).get("email")
            row["status"] = (row.get("response") or {}).get("statusCode")
        print_table(rows, ["event_time", "user", "service_name", "action_name", "status"], as_json)
