"""``bastion users|groups|service-principals|tokens``."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.common import client, print_json, print_table, read_secret

users = typer.Typer(help="Users (SCIM).", no_args_is_help=True)
groups = typer.Typer(help="Groups and their members.", no_args_is_help=True)
service_principals = typer.Typer(help="Service principals.", no_args_is_help=True)
tokens = typer.Typer(help="Your personal access tokens.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@users.command("list")
def users_list(as_json: AsJson = False) -> None:
    with client() as c:
        print_table(
            c.list_principals("Users"), ["id", "userName", "displayName", "active"], as_json
        )


@users.command("create")
def users_create(
    user_name: str,
    display_name: Annotated[str | None, typer.Option()] = None,
    password: Annotated[
        str | None, typer.Option(help="Initial password (prompted if --prompt-password).")
    ] = None,
    prompt_password: Annotated[bool, typer.Option()] = False,
) -> None:
    if prompt_password:  # on a terminal: hidden and confirmed; else one line from stdin
        password = read_secret("Password")
    with client() as c:
        print_json(c.create_user(user_name, display_name, password))


@users.command("delete")
def users_delete(user_name: str) -> None:
    with client() as c:
        user = c.find_principal("Users", "userName", user_name)
        c.delete_principal("Users", user["id"])


@users.command("me")
def users_me() -> None:
    with client() as c:
        print_json(c.me())


@groups.command("list")
def groups_list(as_json: AsJson = False) -> None:
    with client() as c:
        rows = c.list_principals("Groups")
        for row in rows:
            row["members"] = [m.get("display") for m in row.get("members", [])]
        print_table(rows, ["id", "displayName", "members"], as_json)


@groups.command("create")
def groups_create(name: str) -> None:
    with client() as c:
        print_json(c.create_group(name))


@groups.command("delete")
def groups_delete(name: str) -> None:
    with client() as c:
        group = c.find_principal("Groups", "displayName", name)
        c.delete_principal("Groups", group["id"])


def _member_ids(names: list[str]) -> list[str]:
    with client() as c:
        ids = []
        for name in names:
            for kind, attribute in (
                ("Users", "userName"),
                ("Groups", "displayName"),
                ("ServicePrincipals", "applicationId"),
            ):
                try:
                    ids.append(c.find_principal(kind, attribute, name)["id"])
                    break
                except Exception:
                    continue
            else:
                typer.echo(f"Error: no principal named {name!r}.", err=True)
                raise typer.Exit(1)
        return ids


@groups.command("add-member")
def groups_add_member(group: str, members: list[str]) -> None:
    ids = _member_ids(members)
    with client() as c:
        g = c.find_principal("Groups", "displayName", group)
        c.patch_group_members(g["id"], "add", ids)


@groups.command("remove-member")
def groups_remove_member(group: str, members: list[str]) -> None:
    ids = _member_ids(members)
    with client() as c:
        g = c.find_principal("Groups", "displayName", group)
        c.patch_group_members(g["id"], "remove", ids)


@service_principals.command("list")
def sp_list(as_json: AsJson = False) -> None:
    with client() as c:
        print_table(
            c.list_principals("ServicePrincipals"),
            ["id", "applicationId", "displayName", "active"],
            as_json,
        )


@service_principals.command("create")
def sp_create(
    display_name: str,
    with_secret: Annotated[bool, typer.Option(help="Also create an OAuth secret.")] = False,
) -> None:
    with client() as c:
        sp = c.create_service_principal(display_name)
        if with_secret:
            sp["secret"] = c.create_service_principal_secret(sp["id"])["secret"]
        print_json(sp)


@service_principals.command("new-secret")
def sp_secret(application_id: str) -> None:
    with client() as c:
        sp = c.find_principal("ServicePrincipals", "applicationId", application_id)
        print_json(c.create_service_principal_secret(sp["id"]))


@tokens.command("create")
def tokens_create(
    lifetime_seconds: Annotated[int | None, typer.Option()] = None,
    comment: Annotated[str | None, typer.Option()] = None,
    scope: Annotated[list[str] | None, typer.Option(help="Limit the token to a scope.")] = None,
) -> None:
    with client() as c:
        print_json(c.create_token(lifetime_seconds, comment, scope))


@tokens.command("list")
def tokens_list(as_json: AsJson = False) -> None:
    with client() as c:
        print_table(
            c.list_tokens(), ["token_id", "comment", "creation_time", "expiry_time"], as_json
        )


@tokens.command("revoke")
def tokens_revoke(token_id: str) -> None:
    with client() as c:
        c.delete_token(token_id)
