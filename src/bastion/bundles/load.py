"""Loading a bundle: files and includes, the target, variables, ``${…}`` references and
development mode, into one validated :class:`ResolvedBundle`."""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bastion.bundles.errors import BundleInvalid, Problem, dotted
from bastion.bundles.model import BundleFile, Resources

ROOT_FILES = ("bastion.yml", "bastion.yaml", "databricks.yml", "databricks.yaml")
_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_.\-\[\]]+)\}")
#: Resource types whose names development mode prefixes (``dev_<user>_``), as Databricks does.
PREFIXED = (
    "schemas",
    "registered_models",
    "model_serving_endpoints",
    "secret_scopes",
    "views",
    "functions",
)
#: What each resource type is called by, for ``${resources.<type>.<key>.name}``.
NAME_FIELD = {"grants": "full_name", "redteam_scans": "endpoint"}


@dataclass
class ResolvedBundle:
    name: str
    target: str | None
    mode: str | None
    root: Path
    user_name: str
    resources: Resources
    variables: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    #: Principals the bundle's top-level permissions give CAN_MANAGE: they may deploy it too.
    managers: list[str] = field(default_factory=list)

    @property
    def state_key(self) -> str:
        """Deployments of one bundle and target share state; development mode's is per user."""
        target = self.target or "default"
        return f"{target}@{self.user_name}" if self.mode == "development" else target


def short_name(user_name: str) -> str:
    """``ana.lopez@example.com`` → ``ana_lopez`` (Databricks' short name)."""
    return re.sub(r"[^a-z0-9_]+", "_", user_name.split("@", 1)[0].lower()).strip("_") or "user"


def find_root(path: Path | None) -> Path:
    """The bundle file: ``path`` itself, or the first root file name in the directory."""
    if path is not None and path.is_file():
        return path
    folder = path or Path.cwd()
    for name in ROOT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise BundleInvalid(
        [Problem("bundle", f"no {' or '.join(ROOT_FILES[:3:2])} in {folder}", "run `bastion init`")]
    )


def _read(path: Path, problems: list[Problem]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem("(file)", f"cannot be read: {exc}", file=str(path)))
        return {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        problems.append(Problem(where, f"is not valid YAML: {exc}", file=str(path)))
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(Problem("(file)", "must be a mapping of keys", file=str(path)))
        return {}
    return data


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` into ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _includes(root: Path, data: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    patterns = data.get("include") or []
    if not isinstance(patterns, list):
        problems.append(Problem("include", "must be a list of glob patterns"))
        return data
    base = root.parent.resolve()
    merged = dict(data)
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or pattern.startswith("/") or ".." in Path(pattern).parts:
            problems.append(
                Problem(f"include[{index}]", "must be a relative pattern inside the bundle")
            )
            continue
        matches = sorted(base.glob(pattern))
        if not matches:
            problems.append(Problem(f"include[{index}]", f"{pattern!r} matches no file"))
        for path in matches:
            if not path.resolve().is_relative_to(base):
                problems.append(Problem(f"include[{index}]", f"{path} is outside the bundle"))
                continue
            extra = _read(path, problems)
            for key in ("bundle", "include"):
                if key in extra:
                    problems.append(
                        Problem(key, "may appear only in the root file", file=str(path))
                    )
                    extra.pop(key)
            merged = deep_merge(merged, extra)
    return merged


def _pick_target(data: dict[str, Any], target: str | None, problems: list[Problem]) -> str | None:
    targets = data.get("targets") or {}
    if not isinstance(targets, dict):
        return None
    if target is not None:
        if target not in targets:
            close = difflib.get_close_matches(target, list(targets), n=1)
            problems.append(
                Problem(
                    "targets",
                    f"has no target {target!r}",
                    f"did you mean {close[0]!r}?" if close else f"targets: {', '.join(targets)}",
                )
            )
            return None
        return target
    defaults = [n for n, t in targets.items() if isinstance(t, dict) and t.get("default")]
    if len(defaults) > 1:
        problems.append(Problem("targets", "more than one target has default: true"))
    if defaults:
        return defaults[0]
    return next(iter(targets)) if len(targets) == 1 else None


class _Resolver:
    """``${var.x}``, ``${bundle.*}``, ``${workspace.current_user.*}``, and in a second pass
    ``${resources.<type>.<key>.<field>}``; reports unknown references and cycles."""

    def __init__(self, context: dict[str, Any], problems: list[Problem]) -> None:
        self.context = context
        self.problems = problems
        self._stack: list[str] = []

    def lookup(self, ref: str, path: str) -> Any:
        if ref in self._stack:
            cycle = " → ".join([*self._stack[self._stack.index(ref) :], ref])
            self.problems.append(Problem(path, f"references form a cycle: {cycle}"))
            return None
        value: Any = self.context
        for part in ref.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            else:
                self.problems.append(
                    Problem(path, f"${{{ref}}} does not resolve", _hint_for(ref, self.context))
                )
                return None
        self._stack.append(ref)
        try:
            return self.resolve(value, path)
        finally:
            self._stack.pop()

    def resolve(self, value: Any, path: str, *, only: str | None = None) -> Any:
        if isinstance(value, dict):
            return {
                k: self.resolve(v, f"{path}.{k}" if path else k, only=only)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.resolve(v, f"{path}[{i}]", only=only) for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value
        whole = _REFERENCE.fullmatch(value)
        if whole and (only is None or whole.group(1).startswith(only)):
            return self.lookup(whole.group(1), path)  # keeps the referenced value's type

        def replace(match: re.Match[str]) -> str:
            ref = match.group(1)
            if only is not None and not ref.startswith(only):
                return match.group(0)
            found = self.lookup(ref, path)
            return "" if found is None else str(found)

        return _REFERENCE.sub(replace, value)


def _hint_for(ref: str, context: dict[str, Any]) -> str:
    head, _, rest = ref.partition(".")
    if head == "var":
        known = list((context.get("var") or {}).keys())
        close = difflib.get_close_matches(rest, known, n=1)
        return f"did you mean var.{close[0]}?" if close else "declare it under 'variables'"
    if head == "resources":
        return "reference a resource declared in this bundle, e.g. ${resources.schemas.<key>.name}"
    return "known roots: var, bundle, workspace, resources"


def _variables(
    data: dict[str, Any],
    target: dict[str, Any],
    given: Mapping[str, str],
    problems: list[Problem],
) -> dict[str, Any]:
    declared = data.get("variables") or {}
    if not isinstance(declared, dict):
        problems.append(Problem("variables", "must be a mapping"))
        return {}
    values: dict[str, Any] = {}
    target_values = target.get("variables") or {}
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {"default": spec}
        env = os.environ.get(f"BUNDLE_VAR_{name}")
        if name in given:
            values[name] = given[name]
        elif env is not None:
            values[name] = env
        elif name in target_values:
            override = target_values[name]
            values[name] = override.get("default") if isinstance(override, dict) else override
        elif "default" in spec and spec["default"] is not None:
            values[name] = spec["default"]
        else:
            problems.append(
                Problem(
                    f"variables.{name}",
                    "has no value",
                    f"give --var {name}=…, set BUNDLE_VAR_{name}, or a default",
                )
            )
    for name in list(given) + list(target_values):
        if name not in declared:
            problems.append(
                Problem(
                    f"variables.{name}", "is set but not declared", "declare it under 'variables'"
                )
            )
    return values


def load_bundle(
    path: Path | None,
    *,
    target: str | None,
    user_name: str,
    variables: Mapping[str, str] | None = None,
) -> ResolvedBundle:
    """Read, merge, resolve and validate; :class:`BundleInvalid` lists every problem."""
    problems: list[Problem] = []
    root = find_root(path)
    data = _read(root, problems)
    if problems:  # the file itself is unreadable: nothing more to say about it
        raise BundleInvalid(problems)
    data = _includes(root, data, problems)
    warnings: list[str] = []
    chosen = _pick_target(data, target, problems)
    target_data: dict[str, Any] = {}
    if chosen is not None:
        raw = (data.get("targets") or {}).get(chosen) or {}
        target_data = raw if isinstance(raw, dict) else {}
    for key in ("resources", "permissions", "presets", "workspace"):
        if key in target_data:
            base = data.get(key) or ({} if key != "permissions" else [])
            data[key] = (
                deep_merge(base, target_data[key])
                if isinstance(base, dict) and isinstance(target_data[key], dict)
                else target_data[key]
            )
    mode = target_data.get("mode") if isinstance(target_data.get("mode"), str) else None
    for key in ("artifacts", "sync", "run_as", "scripts", "python", "experimental"):
        if data.get(key) or target_data.get(key):
            warnings.append(f"{key}: not used by Bastion (accepted so databricks.yml loads)")
    values = _variables(data, target_data, variables or {}, problems)
    bundle_name = str((data.get("bundle") or {}).get("name") or "")
    short = short_name(user_name)
    context: dict[str, Any] = {
        "var": values,
        "bundle": {"name": bundle_name, "target": chosen or "default"},
        "workspace": {"current_user": {"userName": user_name, "short_name": short}},
    }
    resolver = _Resolver(context, problems)
    data = {k: v for k, v in data.items() if k != "targets"}
    data = resolver.resolve(data, "", only="var")
    data = resolver.resolve(data, "", only="bundle")
    data = resolver.resolve(data, "", only="workspace")
    resources = data.get("resources") or {}
    presets = data.get("presets") or {}
    prefix = presets.get("name_prefix") if isinstance(presets, dict) else None
    if mode == "development" and prefix is None:
        prefix = f"dev_{short}_"
    if prefix and isinstance(resources, dict):
        for kind in PREFIXED:
            for resource in (resources.get(kind) or {}).values():
                if isinstance(resource, dict) and isinstance(resource.get("name"), str):
                    resource["name"] = prefix + resource["name"]
    explicit_prefix = isinstance(presets, dict) and presets.get("name_prefix") is not None
    if mode == "development" and not explicit_prefix and isinstance(resources, dict):
        # App names are part of a URL: lower-case and '-', so their prefix is 'dev-<you>-'.
        for app in (resources.get("apps") or {}).values():
            if isinstance(app, dict) and isinstance(app.get("name"), str):
                app["name"] = f"dev-{short.replace('_', '-')}-{app['name']}"
    if mode == "development" and isinstance(resources, dict):
        for endpoint in (resources.get("model_serving_endpoints") or {}).values():
            if isinstance(endpoint, dict):
                tags = endpoint.setdefault("tags", [])
                if isinstance(tags, list):
                    tags.append({"key": "dev", "value": user_name})
    context["resources"] = resources
    data = resolver.resolve(data, "", only="resources")
    parsed = _validate(data, problems)
    if problems or parsed is None:
        raise BundleInvalid(problems)
    from bastion.bundles.checks import check_bundle

    check_bundle(parsed.resources, problems, root.parent.resolve())
    if problems:
        raise BundleInvalid(problems)
    return ResolvedBundle(
        name=parsed.bundle.name,
        target=chosen,
        mode=mode,
        root=root.parent.resolve(),
        user_name=user_name,
        resources=parsed.resources,
        variables=values,
        warnings=warnings,
        managers=sorted(
            str(p.user_name or p.group_name or p.service_principal_name)
            for p in parsed.permissions
            if p.level.upper() == "CAN_MANAGE"
        ),
    )


def _validate(data: dict[str, Any], problems: list[Problem]) -> BundleFile | None:
    try:
        return BundleFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            location = dotted(error["loc"])
            kind = error["type"]
            if kind == "extra_forbidden":
                problems.append(
                    Problem(location, "is not a known key", _closest(BundleFile, error["loc"]))
                )
            elif kind == "missing":
                problems.append(Problem(location, "is required", f"add '{error['loc'][-1]}'"))
            else:
                problems.append(Problem(location, error["msg"]))
        return None


def _closest(model: type[BaseModel], location: tuple[Any, ...]) -> str | None:
    """Did-you-mean for an unknown key, from the fields of the model that holds it."""
    current: Any = model
    for part in location[:-1]:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None:
            continue
        info = fields.get(str(part))
        if info is None:  # a mapping key (a resource key): stay on the value type
            continue
        current = _inner_model(info.annotation)
    fields = getattr(current, "model_fields", {}) if current is not None else {}
    close = difflib.get_close_matches(str(location[-1]), list(fields), n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _inner_model(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", ()) or ()
    for candidate in (annotation, *args[::-1]):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
        inner = getattr(candidate, "__args__", ()) or ()
        for arg in inner[::-1]:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return None
