"""Loading a bundle: every problem is named with its path and a hint, before anything is
applied; a real databricks.yml using the supported resources loads unchanged."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bastion.bundles.errors import BundleInvalid
from bastion.bundles.load import load_bundle


def _write(tmp_path: Path, text: str, name: str = "bastion.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _problems(tmp_path: Path, text: str, **kwargs: object) -> list[str]:
    _write(tmp_path, text)
    with pytest.raises(BundleInvalid) as failed:
        load_bundle(tmp_path, target=None, user_name="ana@example.com", **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in failed.value.problems]


def test_a_databricks_yml_loads_unchanged(tmp_path: Path) -> None:
    _write(
        tmp_path,
        """
        bundle: {name: genai-ops}
        variables: {catalog: {default: main}}
        workspace: {host: "https://adb-123.azuredatabricks.net"}
        run_as: {service_principal_name: "1234-abcd"}
        resources:
          registered_models:
            agent:
              name: agent
              catalog_name: ${var.catalog}
              schema_name: agents
              grants: [{principal: ml-engineers, privileges: [EXECUTE]}]
          model_serving_endpoints:
            agent_ep:
              name: agent-ep
              config:
                served_entities:
                  - entity_name: "${var.catalog}.agents.agent"
                    entity_version: "1"
                    workload_size: Small
                    scale_to_zero_enabled: true
              ai_gateway:
                usage_tracking_config: {enabled: true}
                inference_table_config: {enabled: true, catalog_name: "${var.catalog}", schema_name: agents}
              permissions: [{level: CAN_QUERY, group_name: users}]
        targets:
          dev: {mode: development, default: true, workspace: {host: "https://adb-123.azuredatabricks.net"}}
          prod:
            mode: production
            workspace: {host: "https://adb-123.azuredatabricks.net", root_path: "/Workspace/Shared/.bundle/${bundle.name}/${bundle.target}"}
        """,
        name="databricks.yml",
    )
    dev = load_bundle(tmp_path / "databricks.yml", target=None, user_name="ana.lopez@example.com")
    assert dev.target == "dev" and dev.mode == "development"
    assert dev.resources.registered_models["agent"].name == "dev_ana_lopez_agent"
    endpoint = dev.resources.model_serving_endpoints["agent_ep"]
    assert endpoint.name == "dev_ana_lopez_agent-ep"
    assert {"key": "dev", "value": "ana.lopez@example.com"} in (endpoint.tags or [])
    assert dev.state_key == "dev@ana.lopez@example.com"  # each developer has their own
    assert any("run_as" in w for w in dev.warnings)
    prod = load_bundle(tmp_path / "databricks.yml", target="prod", user_name="ci@example.com")
    assert prod.resources.model_serving_endpoints["agent_ep"].name == "agent-ep"
    assert prod.state_key == "prod"


def test_unknown_keys_and_bad_values_name_their_path_with_a_hint(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
        bundle: {name: b}
        resources:
          registered_models:
            m: {name: m, catalog_name: main, schema_name: default, grantz: []}
          model_serving_endpoints:
            ep:
              name: ep
              config: {served_entities: [{entity_name: main.default.m, entity_version: "1"}]}
              permissions: [{level: CAN_QUERY}]
        """,
    )
    assert any(
        p.startswith("resources.registered_models.m.grantz: is not a known key")
        and "did you mean 'grants'" in p
        for p in problems
    ), problems


def test_semantic_problems_all_at_once(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
        bundle: {name: b}
        resources:
          registered_models:
            m:
              name: m
              catalog_name: main
              schema_name: default
              versions: [{source: m.gguf}, {source: m2.gguf, external_model: {provider: openai, name: x}}]
              aliases: [{alias_name: champion, version_num: 3}]
          model_serving_endpoints:
            agent:
              name: agent
              config:
                served_entities:
                  - {name: a, entity_name: main.default.m, entity_version: "@challenger"}
                  - {name: b, entity_name: main.default.m, entity_version: "1"}
                traffic_config:
                  routes:
                    - {served_entity_name: a, traffic_percentage: 80}
                    - {served_entity_name: b, traffic_percentage: 10}
              permissions: [{level: CAN_QUERI, group_name: users}]
          grants:
            g: {securable_type: tabel, full_name: main.default.t, principal: users, privileges: [SELEKT]}
        """,
    )
    text = "\n".join(problems)
    assert (
        "resources.model_serving_endpoints.agent.config.traffic_config.routes[1]"
        ".traffic_percentage: the routes' traffic_percentage sum to 90, not 100" in text
    )
    assert "resources.registered_models.m.aliases[0].version_num: points at version 3" in text
    assert "resources.registered_models.m.versions[1]: needs exactly one of" in text
    assert "entity_version: alias '@challenger' is not declared" in text
    assert "permissions[0].level: is not a level here ('CAN_QUERI')" in text
    assert "resources.grants.g.securable_type" in text and "privileges[0]" in text
    assert all(
        "(hint:" in p or "Unknown" in p or "Invalid" in p or "privilege" in p.lower()
        for p in problems
        if "sum to" in p or "points at" in p
    )


def test_references_resolve_or_are_named(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """
        bundle: {name: b}
        variables:
          a: {default: "${var.b}"}
          b: {default: "${var.a}"}
          catalog: {default: main}
        resources:
          schemas:
            s: {name: "${var.catalgo}", catalog_name: "${var.catalog}"}
            t: {name: t, catalog_name: "${resources.schemas.nope.name}", comment: "${var.a}"}
        """,
    )
    text = "\n".join(problems)
    assert "resources.schemas.s.name: ${var.catalgo} does not resolve" in text
    assert "did you mean var.catalog?" in text
    assert "${resources.schemas.nope.name} does not resolve" in text
    assert "references form a cycle: var.a → var.b → var.a" in text


def test_variables_come_from_the_command_line_then_the_target_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        tmp_path,
        """
        bundle: {name: b}
        variables:
          schema: {default: from_default}
          catalog: {}
        resources:
          schemas:
            s: {name: "${var.schema}", catalog_name: "${var.catalog}"}
        targets:
          qa: {variables: {schema: from_target}}
        """,
    )
    load = lambda **kw: load_bundle(tmp_path, user_name="u@x", **kw)  # noqa: E731
    with pytest.raises(BundleInvalid) as missing:
        load(target="qa")
    assert "variables.catalog: has no value" in str(missing.value.problems[0])
    bundle = load(target="qa", variables={"catalog": "main"})
    assert bundle.resources.schemas["s"].name == "from_target"
    monkeypatch.setenv("BUNDLE_VAR_schema", "from_env")
    assert (
        load(target="qa", variables={"catalog": "main"}).resources.schemas["s"].name == "from_env"
    )
    assert (
        load(target="qa", variables={"catalog": "main", "schema": "cli"})
        .resources.schemas["s"]
        .name
        == "cli"
    )


def test_includes_stay_inside_the_bundle(tmp_path: Path) -> None:
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "schemas.yml").write_text(
        "resources:\n  schemas:\n    s: {name: s, catalog_name: main}\n"
    )
    _write(tmp_path, "bundle: {name: b}\ninclude: [resources/*.yml]\n")
    assert "s" in load_bundle(tmp_path, target=None, user_name="u@x").resources.schemas
    problems = _problems(tmp_path, "bundle: {name: b}\ninclude: [../*.yml, /etc/*.yml]\n")
    assert len([p for p in problems if "inside the bundle" in p]) == 2


def test_unknown_target_suggests_one(tmp_path: Path) -> None:
    _write(tmp_path, "bundle: {name: b}\ntargets: {dev: {}, prod: {}}\n")
    with pytest.raises(BundleInvalid) as failed:
        load_bundle(tmp_path, target="prd", user_name="u@x")
    assert "did you mean 'prod'?" in str(failed.value.problems[0])


def test_app_problems_are_named_before_anything_is_applied(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    problems = _problems(
        tmp_path,
        """
        bundle: {name: b}
        resources:
          apps:
            portal:
              name: Portal_App
              source_code_path: ../elsewhere
              resources:
                - {name: ep, serving_endpoint: {name: x}, secret: {scope: s, key: k}}
              config:
                command: [python, app.py]
                env:
                  - {name: ENDPOINT, value_from: endpoint}
                  - {name: BOTH, value: a, valueFrom: ep}
              permissions: [{level: CAN_RUN, group_name: users}]
            bare:
              name: bare
              source_code_path: ./empty
        """,
    )
    text = "\n".join(problems)
    assert "resources.apps.portal.name: is not a valid app name ('Portal_App')" in text
    assert "resources.apps.portal.source_code_path: is not a folder inside the bundle" in text
    assert "resources.apps.portal.resources[0]: needs exactly one kind" in text
    assert "config.env[0].value_from: names no resource of this app ('endpoint')" in text
    assert "config.env[1]: needs exactly one of value and value_from" in text
    assert "resources.apps.portal.permissions[0].level: is not a level here ('CAN_RUN')" in text
    assert "resources.apps.bare.source_code_path: has no app.yaml and no .py file to run" in text


def test_development_mode_prefixes_app_names_as_urls_allow(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.py").write_text("print('hi')\n")
    _write(
        tmp_path,
        """
        bundle: {name: b}
        resources:
          apps:
            portal: {name: portal, source_code_path: ./app, lifecycle: {started: true}}
        targets:
          dev: {mode: development, default: true}
        """,
    )
    bundle = load_bundle(tmp_path, target=None, user_name="ana.lopez@example.com")
    assert bundle.resources.apps["portal"].name == "dev-ana-lopez-portal"
