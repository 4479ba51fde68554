"""Checks a schema cannot express: references between resources, traffic that sums to 100,
aliases that point at versions, privileges that exist — all before anything is applied."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bastion.bundles.errors import Problem
from bastion.bundles.model import Permission, Resources
from bastion.errors import InvalidRequest
from bastion.governance.privileges import parse_privilege
from bastion.governance.securables import parse_type, validate_part

ENDPOINT_LEVELS = ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE")
SCOPE_LEVELS = ("READ", "WRITE", "MANAGE")
APP_LEVELS = ("CAN_USE", "CAN_MANAGE")
#: An app's name, as the server checks it (``/apps/<name>/`` is part of its URL).
APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,29}$")
APP_RESOURCE_KINDS = ("serving_endpoint", "uc_securable", "secret", "sql_warehouse")


def check_bundle(resources: Resources, problems: list[Problem], root: Path | None = None) -> None:
    _names(resources, problems)
    _apps(resources, problems, root)
    _models(resources, problems)
    _endpoints(resources, problems)
    for key, scope in resources.secret_scopes.items():
        _permissions(f"resources.secret_scopes.{key}", scope.permissions, SCOPE_LEVELS, problems)
    for kind in ("catalogs", "schemas", "registered_models", "views", "functions"):
        for key, resource in getattr(resources, kind).items():
            for index, grant in enumerate(resource.grants):
                _privileges(f"resources.{kind}.{key}.grants[{index}]", grant.privileges, problems)
    for key, grant in resources.grants.items():
        path = f"resources.grants.{key}"
        try:
            parse_type(grant.securable_type)
        except InvalidRequest as exc:
            problems.append(Problem(f"{path}.securable_type", exc.message))
        _privileges(path, grant.privileges, problems)
    endpoint_names = {e.name for e in resources.model_serving_endpoints.values()}
    for key, scan in resources.redteam_scans.items():
        if scan.endpoint.startswith("${"):
            continue
        if scan.endpoint not in endpoint_names and scan.fail_over_asr is None:
            problems.append(
                Problem(
                    f"resources.redteam_scans.{key}",
                    "has no gate",
                    "set fail_over_asr, the ASR (percent) above which the deploy fails",
                )
            )


def _names(resources: Resources, problems: list[Problem]) -> None:
    parts = {
        "catalogs": lambda r: [r.name],
        "schemas": lambda r: [r.catalog_name, r.name],
        "registered_models": lambda r: [r.catalog_name, r.schema_name, r.name],
        "views": lambda r: [r.catalog_name, r.schema_name, r.name],
        "functions": lambda r: [r.catalog_name, r.schema_name, r.name],
    }
    for kind, of in parts.items():
        for key, resource in getattr(resources, kind).items():
            for part in of(resource):
                try:
                    validate_part(part)
                except InvalidRequest as exc:
                    problems.append(Problem(f"resources.{kind}.{key}.name", exc.message))


def _apps(resources: Resources, problems: list[Problem], root: Path | None) -> None:
    """Names, source folders, resources and the env that reads them, permissions: what the
    server would refuse mid-deploy, found before anything is applied."""
    for key, app in resources.apps.items():
        path = f"resources.apps.{key}"
        if not APP_NAME.match(app.name):
            problems.append(
                Problem(
                    f"{path}.name",
                    f"is not a valid app name ({app.name!r})",
                    "2-30 lower-case letters, digits or '-', starting with a letter or digit "
                    "(development mode adds 'dev-<you>-' in front)",
                )
            )
        if root is not None:
            folder = (root / app.source_code_path).resolve()
            if not folder.is_relative_to(root.resolve()) or not folder.is_dir():
                problems.append(
                    Problem(
                        f"{path}.source_code_path",
                        f"is not a folder inside the bundle ({app.source_code_path!r})",
                        "a path relative to the bundle file, e.g. ./app",
                    )
                )
            elif (
                app.config is None
                and not (folder / "app.yaml").is_file()
                and not any(folder.glob("*.py"))
            ):
                problems.append(
                    Problem(
                        f"{path}.source_code_path",
                        "has no app.yaml and no .py file to run",
                        "add app.yaml with a command, or set config.command here",
                    )
                )
        declared: set[str] = set()
        for index, resource in enumerate(app.resources):
            where = f"{path}.resources[{index}]"
            name = resource.get("name")
            if not isinstance(name, str) or not name:
                problems.append(Problem(f"{where}.name", "is missing", "name the resource"))
            else:
                declared.add(name)
            kinds = [k for k in APP_RESOURCE_KINDS if k in resource]
            if len(kinds) != 1:
                problems.append(
                    Problem(
                        where, "needs exactly one kind", f"one of {', '.join(APP_RESOURCE_KINDS)}"
                    )
                )
        if app.config is not None:
            for index, env in enumerate(app.config.env):
                where = f"{path}.config.env[{index}]"
                if (env.value is None) == (env.value_from is None):
                    problems.append(Problem(where, "needs exactly one of value and value_from"))
                elif env.value_from is not None and env.value_from not in declared:
                    problems.append(
                        Problem(
                            f"{where}.value_from",
                            f"names no resource of this app ({env.value_from!r})",
                            f"declared: {', '.join(sorted(declared)) or 'none'}",
                        )
                    )
        _permissions(path, app.permissions, APP_LEVELS, problems)


def _models(resources: Resources, problems: list[Problem]) -> None:
    for key, model in resources.registered_models.items():
        path = f"resources.registered_models.{key}"
        for index, version in enumerate(model.versions):
            given = [v for v in (version.source, version.agent_code, version.external_model) if v]
            if len(given) != 1:
                problems.append(
                    Problem(
                        f"{path}.versions[{index}]",
                        "needs exactly one of source, agent_code and external_model",
                    )
                )
        declared = len(model.versions)
        seen: set[str] = set()
        for index, alias in enumerate(model.aliases):
            if alias.alias_name.lower() in seen:
                problems.append(Problem(f"{path}.aliases[{index}]", "repeats an alias"))
            seen.add(alias.alias_name.lower())
            if declared and alias.version_num > declared:
                problems.append(
                    Problem(
                        f"{path}.aliases[{index}].version_num",
                        f"points at version {alias.version_num}, but the bundle declares "
                        f"{declared} version(s)",
                        f"use a version from 1 to {declared}",
                    )
                )


def _endpoints(resources: Resources, problems: list[Problem]) -> None:
    models = {
        f"{m.catalog_name}.{m.schema_name}.{m.name}".lower(): m
        for m in resources.registered_models.values()
    }
    for key, endpoint in resources.model_serving_endpoints.items():
        path = f"resources.model_serving_endpoints.{key}"
        _permissions(path, endpoint.permissions, ENDPOINT_LEVELS, problems)
        config = endpoint.config
        entities = config.get("served_entities") or config.get("served_models") or []
        if not isinstance(entities, list) or not entities:
            problems.append(
                Problem(f"{path}.config.served_entities", "needs at least one served entity")
            )
            continue
        names = []
        for index, entity in enumerate(entities):
            if not isinstance(entity, dict):
                problems.append(
                    Problem(f"{path}.config.served_entities[{index}]", "must be a mapping")
                )
                continue
            names.append(str(entity.get("name") or _default_name(entity)))
            _entity_version(path, index, entity, models, problems)
        routes = (config.get("traffic_config") or {}).get("routes")
        if routes is None:
            continue
        if not isinstance(routes, list):
            problems.append(Problem(f"{path}.config.traffic_config.routes", "must be a list"))
            continue
        total = 0
        for index, route in enumerate(routes):
            where = f"{path}.config.traffic_config.routes[{index}]"
            if not isinstance(route, dict):
                problems.append(Problem(where, "must be a mapping"))
                continue
            target = route.get("served_entity_name") or route.get("served_model_name")
            if target not in names:
                problems.append(
                    Problem(
                        f"{where}.served_entity_name",
                        f"names no served entity ({target!r})",
                        f"served entities: {', '.join(names)}",
                    )
                )
            share = route.get("traffic_percentage")
            if not isinstance(share, int) or not 0 <= share <= 100:
                problems.append(Problem(f"{where}.traffic_percentage", "must be 0 to 100"))
            else:
                total += share
        if routes and total != 100:
            problems.append(
                Problem(
                    f"{path}.config.traffic_config.routes[{len(routes) - 1}].traffic_percentage",
                    f"the routes' traffic_percentage sum to {total}, not 100",
                    "make the percentages add up to 100",
                )
            )


def _default_name(entity: dict[str, Any]) -> str:
    if entity.get("external_model"):
        return str((entity["external_model"] or {}).get("name", "external"))
    model = str(entity.get("entity_name") or entity.get("model_name") or "model").rsplit(".", 1)[-1]
    version = str(entity.get("entity_version") or entity.get("model_version") or "").lstrip("@")
    return f"{model}-{version}"


def _entity_version(
    path: str, index: int, entity: dict[str, Any], models: dict[str, Any], problems: list[Problem]
) -> None:
    name = str(entity.get("entity_name") or entity.get("model_name") or "").lower()
    version = str(entity.get("entity_version") or entity.get("model_version") or "").strip()
    model = models.get(name)
    if model is None or not version:
        return
    where = f"{path}.config.served_entities[{index}].entity_version"
    if version.isdigit():
        if model.versions and int(version) > len(model.versions):
            problems.append(
                Problem(
                    where,
                    f"version {version} is not one the bundle declares",
                    f"1 to {len(model.versions)}",
                )
            )
        return
    aliases = {a.alias_name.lower() for a in model.aliases}
    if version.lstrip("@").lower() not in aliases:
        known = ", ".join(sorted(aliases)) or "none yet"
        problems.append(
            Problem(
                where,
                f"alias {version!r} is not declared on {name}",
                f"declare it in the model's aliases (declared: {known})",
            )
        )


def _permissions(
    path: str, permissions: list[Permission], levels: tuple[str, ...], problems: list[Problem]
) -> None:
    for index, permission in enumerate(permissions):
        where = f"{path}.permissions[{index}]"
        named = [
            n
            for n in (
                permission.user_name,
                permission.group_name,
                permission.service_principal_name,
            )
            if n
        ]
        if len(named) != 1:
            problems.append(
                Problem(where, "needs exactly one of user_name, group_name, service_principal_name")
            )
        if permission.level.upper() not in levels:
            problems.append(
                Problem(
                    f"{where}.level",
                    f"is not a level here ({permission.level!r})",
                    f"one of {', '.join(levels)}",
                )
            )


def _privileges(path: str, privileges: list[str], problems: list[Problem]) -> None:
    for index, privilege in enumerate(privileges):
        try:
            parse_privilege(privilege)
        except InvalidRequest as exc:
            problems.append(Problem(f"{path}.privileges[{index}]", exc.message))
