"""``bastion models|secrets|endpoints|agents``: thin commands over the REST client."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from bastion.cli.common import client, print_json, print_table
from bastion.client.serving import ServingClientMixin

models = typer.Typer(help="Registered models, versions and aliases.", no_args_is_help=True)
secrets = typer.Typer(help="Secret scopes and keys (values are never shown).", no_args_is_help=True)
endpoints = typer.Typer(help="Serving endpoints and their permissions.", no_args_is_help=True)
agents = typer.Typer(
    help="Deploy registered models; point coding agents (Claude Code, Codex) at Bastion.",
    no_args_is_help=True,
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class _Api(ServingClientMixin):
    """The serving methods over whatever client the CLI opened."""

    def __init__(self, http: Any) -> None:
        self.http = http

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.http.request(method, path, **kwargs)


@contextmanager
def api() -> Iterator[_Api]:
    with client() as c:
        yield _Api(c)


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must look like key=value, not {item!r}.")
        out[key] = value
    return out


def _load_json(path: Path) -> Any:
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{path} is not valid JSON: {exc}") from None


# -- models -----------------------------------------------------------------------------------


@models.command("create")
def models_create(
    full_name: str,
    comment: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value; repeatable.")] = None,
) -> None:
    """Create catalog.schema.model (needs CREATE MODEL on the schema)."""
    with api() as c:
        print_json(c.create_registered_model(full_name, comment, _pairs(tag, "--tag")))


@models.command("list")
def models_list(schema: str, as_json: AsJson = False) -> None:
    """Models in catalog.schema."""
    catalog, _, name = schema.partition(".")
    with api() as c:
        rows = c.list_registered_models(catalog, name)
        for row in rows:
            row["aliases"] = ", ".join(
                f"@{a['alias_name']}={a['version_num']}" for a in row["aliases"]
            )
        print_table(rows, ["full_name", "owner", "aliases", "comment"], as_json)


@models.command("get")
def models_get(full_name: str) -> None:
    with api() as c:
        print_json(c.get_registered_model(full_name))


@models.command("delete")
def models_delete(full_name: str) -> None:
    with api() as c:
        c.delete_registered_model(full_name)


@models.command("register")
def models_register(
    full_name: str,
    source: Annotated[
        str | None,
        typer.Argument(
            help="A GGUF file or MLflow model folder here (uploaded to your staging area "
            "first), 'staging:<path>', or a path under a server source root."
        ),
    ] = None,
    external: Annotated[
        Path | None, typer.Option(help="JSON file with an external_model config ('-': stdin).")
    ] = None,
    comment: Annotated[str | None, typer.Option()] = None,
    tag: Annotated[list[str] | None, typer.Option(help="key=value; repeatable.")] = None,
) -> None:
    """Register the next version of a model."""
    if (source is None) == (external is None):
        raise typer.BadParameter("Give a SOURCE path or --external FILE, not both.")
    with api() as c:
        if source is not None and not source.startswith("staging:") and Path(source).exists():
            source = c.stage(Path(source))
        print_json(
            c.create_model_version(
                full_name,
                source,
                external_model=_load_json(external) if external else None,
                comment=comment,
                tags=_pairs(tag, "--tag"),
            )
        )


@models.command("versions")
def models_versions(full_name: str, as_json: AsJson = False) -> None:
    with api() as c:
        rows = c.list_model_versions(full_name)
        for row in rows:
            row["aliases"] = ", ".join(f"@{a['alias_name']}" for a in row["aliases"])
        print_table(
            rows, ["version", "status", "artifact_type", "aliases", "content_hash"], as_json
        )


@models.command("version")
def models_version(full_name: str, version: int) -> None:
    with api() as c:
        print_json(c.get_model_version(full_name, version))


@models.command("set-alias")
def models_set_alias(full_name: str, alias: str, version: int) -> None:
    """Point @ALIAS at VERSION (endpoints serving @ALIAS follow on their next request)."""
    with api() as c:
        print_json(c.set_registered_model_alias(full_name, alias, version))


@models.command("delete-alias")
def models_delete_alias(full_name: str, alias: str) -> None:
    with api() as c:
        c.delete_registered_model_alias(full_name, alias)


# -- secrets ----------------------------------------------------------------------------------


@secrets.command("create-scope")
def secrets_create_scope(
    scope: str, initial_manage_principal: Annotated[str | None, typer.Option()] = None
) -> None:
    with api() as c:
        c.create_secret_scope(scope, initial_manage_principal)


@secrets.command("list-scopes")
def secrets_list_scopes(as_json: AsJson = False) -> None:
    with api() as c:
        print_table(c.list_secret_scopes(), ["name", "backend_type"], as_json)


@secrets.command("delete-scope")
def secrets_delete_scope(scope: str) -> None:
    with api() as c:
        c.delete_secret_scope(scope)


@secrets.command("put")
def secrets_put(
    scope: str,
    key: str,
    string_value: Annotated[
        str | None,
        typer.Option(help="The value (visible in shell history; prefer the prompt or stdin)."),
    ] = None,
) -> None:
    """Store a secret; read from --string-value, else stdin when piped, else a hidden prompt."""
    if string_value is None:
        if sys.stdin.isatty():
            string_value = typer.prompt("Value", hide_input=True)
        else:
            string_value = sys.stdin.read().rstrip("\n")
    with api() as c:
        c.put_secret(scope, key, string_value)
    typer.echo(f"Stored; reference it as {{{{secrets/{scope}/{key}}}}}.")


@secrets.command("list")
def secrets_list(scope: str, as_json: AsJson = False) -> None:
    with api() as c:
        print_table(c.list_secrets(scope), ["key", "last_updated_timestamp"], as_json)


@secrets.command("delete")
def secrets_delete(scope: str, key: str) -> None:
    with api() as c:
        c.delete_secret(scope, key)


@secrets.command("put-acl")
def secrets_put_acl(scope: str, principal: str, permission: str) -> None:
    """Give PRINCIPAL READ, WRITE or MANAGE on SCOPE."""
    with api() as c:
        c.put_secret_acl(scope, principal, permission)


@secrets.command("list-acls")
def secrets_list_acls(scope: str, as_json: AsJson = False) -> None:
    with api() as c:
        print_table(c.list_secret_acls(scope), ["principal", "permission"], as_json)


# -- endpoints --------------------------------------------------------------------------------


@endpoints.command("create")
def endpoints_create(
    name: str,
    config: Annotated[
        Path | None, typer.Option(help="JSON file: the Databricks 'config' block ('-': stdin).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Serve this model (catalog.schema.model).")
    ] = None,
    version: Annotated[str | None, typer.Option(help="Version number or @alias.")] = None,
    fallback: Annotated[bool, typer.Option(help="Try the other entities on failure.")] = False,
) -> None:
    """Create an endpoint from --config FILE, or from --model and --version."""
    with api() as c:
        print_json(
            c.create_serving_endpoint(
                name,
                _core_config(config, model, version),
                ai_gateway={"fallback_config": {"enabled": True}} if fallback else None,
            )
        )


def _core_config(path: Path | None, model: str | None, version: str | None) -> dict[str, Any]:
    if path is not None:
        loaded = _load_json(path)
        return dict(loaded.get("config", loaded))
    if not model or not version:
        raise typer.BadParameter("Give --config FILE, or --model and --version.")
    return {"served_entities": [{"entity_name": model, "entity_version": version}]}


@endpoints.command("list")
def endpoints_list(as_json: AsJson = False) -> None:
    with api() as c:
        rows = c.list_serving_endpoints()
        for row in rows:
            row["ready"] = row["state"]["ready"]
            row["config_update"] = row["state"]["config_update"]
        print_table(rows, ["name", "ready", "config_update", "creator", "query_url"], as_json)


@endpoints.command("get")
def endpoints_get(name: str) -> None:
    with api() as c:
        print_json(c.get_serving_endpoint(name))


@endpoints.command("update-config")
def endpoints_update_config(
    name: str,
    config: Annotated[Path | None, typer.Option(help="JSON file ('-': stdin).")] = None,
    model: Annotated[str | None, typer.Option()] = None,
    version: Annotated[str | None, typer.Option()] = None,
) -> None:
    with api() as c:
        print_json(c.update_serving_endpoint_config(name, _core_config(config, model, version)))


@endpoints.command("delete")
def endpoints_delete(name: str) -> None:
    with api() as c:
        c.delete_serving_endpoint(name)


@endpoints.command("permissions")
def endpoints_permissions(name: str) -> None:
    with api() as c:
        print_json(c.get_serving_endpoint_permissions(name))


@endpoints.command("grant")
def endpoints_grant(
    name: str,
    level: Annotated[str, typer.Argument(help="CAN_VIEW, CAN_QUERY or CAN_MANAGE.")],
    user: Annotated[str | None, typer.Option()] = None,
    group: Annotated[str | None, typer.Option()] = None,
    service_principal: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add one entry to the endpoint's access control list."""
    entry = {
        k: v
        for k, v in (
            ("user_name", user),
            ("group_name", group),
            ("service_principal_name", service_principal),
        )
        if v
    }
    entry["permission_level"] = level
    with api() as c:
        print_json(c.update_serving_endpoint_permissions(name, [entry]))


# -- agents -----------------------------------------------------------------------------------


@agents.command("deploy")
def agents_deploy(
    model_name: str,
    version: Annotated[str, typer.Option("--version", "--model-version", help="N or @alias.")],
    tag: Annotated[list[str] | None, typer.Option(help="key=value; repeatable.")] = None,
    endpoint_name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create or update the endpoint serving MODEL_NAME at VERSION, payload table enabled."""
    from bastion.agents import deploy

    with client() as c:
        deployment = deploy(
            model_name,
            version,
            endpoint_name=endpoint_name,
            tags=_pairs(tag, "--tag"),
            client=c,
        )
    print_json(
        {
            "endpoint_name": deployment.endpoint_name,
            "model_name": deployment.model_name,
            "model_version": deployment.model_version,
            "query_endpoint": deployment.query_endpoint,
            "payload_table": deployment.payload_table,
            "created": deployment.created,
        }
    )


@agents.command("configure")
def agents_configure(
    tool: Annotated[str, typer.Argument(help="claude-code or codex.")],
    endpoint: Annotated[
        str | None, typer.Option(help="Serving endpoint the tool uses [default: smollm2].")
    ] = None,
    small_endpoint: Annotated[
        str | None,
        typer.Option(help="Claude Code: endpoint for Haiku/background requests [default: same]."),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write the tool's settings file instead of printing.")
    ] = False,
    lifetime_days: Annotated[
        int, typer.Option(min=1, help="Lifetime of the token minted for the tool.")
    ] = 90,
) -> None:
    """Point Claude Code or Codex at a Bastion endpoint, with a new token that may only query
    serving endpoints (its traffic is then authorized, rate-limited and logged as yours).

    Prints the settings, or with --write merges them into ~/.claude/settings.json
    ($CLAUDE_CONFIG_DIR) or ~/.codex/config.toml ($CODEX_HOME), keeping everything else there;
    the token minted by an earlier configure of the same tool on this machine is revoked.
    """
    import platform as host_platform

    from bastion.client import coding_agents as ca

    if tool not in ca.TOOLS:
        raise typer.BadParameter(f"TOOL must be one of {', '.join(ca.TOOLS)}, not {tool!r}.")
    name = endpoint or ca.DEFAULT_ENDPOINT
    target = ca.claude_settings_path() if tool == "claude-code" else ca.codex_config_path()
    comment = ca.token_comment(tool, host_platform.node() or "this machine")
    with client() as c:
        for each in dict.fromkeys(n for n in (name, small_endpoint) if n):
            c.request("GET", f"/api/2.0/serving-endpoints/{quote(each, safe='')}")  # exists?
        existing = target.read_text(encoding="utf-8") if write and target.exists() else None
        minted = c.create_token(
            lifetime_seconds=lifetime_days * 86400, comment=comment, scopes=[ca.SERVING_SCOPE]
        )
        token, token_id = minted["token_value"], minted["token_info"]["token_id"]
        try:
            if tool == "claude-code":
                env = ca.claude_code_env(c.host, token, name, small_endpoint=small_endpoint)
                text = ca.merge_claude_settings(existing, env)
            else:
                text = ca.merge_codex_config(existing, c.host, token, name)
            if write:
                ca.write_private(target, text)
        except BaseException:
            c.delete_token(token_id)  # nothing written: the new token must not outlive this
            raise
        if write:
            for info in c.list_tokens():
                if info.get("comment") == comment and info.get("token_id") != token_id:
                    c.delete_token(info["token_id"])
    if not write:
        sys.stdout.write(text)
        return
    sys.stderr.write(f"Wrote {target} ({tool} → endpoint {name}, token {token_id}).\n")
