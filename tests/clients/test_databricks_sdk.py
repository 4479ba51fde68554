"""databricks-sdk, unchanged: serving endpoints, OAuth M2M login, statement execution with
EXTERNAL_LINKS and query tags, Unity Catalog functions and volumes, and its error types."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pyarrow as pa
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, PermissionDenied
from databricks.sdk.service import catalog, serving
from databricks.sdk.service import sql as dbsql

from clients.conftest import REPLY, USER, Deployment

SCIM = "/api/2.0/preview/scim/v2"


@pytest.fixture(scope="module")
def w(deployment: Deployment) -> WorkspaceClient:
    """The SDK as the ordinary test user, with a personal access token."""
    return WorkspaceClient(host=deployment.server.url, token=deployment.token, auth_type="pat")


@pytest.fixture(scope="module")
def user_may_create(deployment: Deployment) -> Iterator[None]:
    """What a workspace grants its users on ``main.default``: create volumes and functions."""
    with deployment.server.admin() as admin:
        grant = {"changes": [{"principal": USER, "add": ["CREATE_VOLUME", "CREATE_FUNCTION"]}]}
        reply = admin.patch("/api/2.1/unity-catalog/permissions/schema/main.default", json=grant)
        assert reply.status_code == 200, reply.text
    yield


@pytest.mark.compat(
    "databricks-sdk", "`serving_endpoints.create_and_wait` / `get` / `patch` / `query`"
)
def test_serving_endpoints(w: WorkspaceClient, deployment: Deployment) -> None:
    config = serving.EndpointCoreConfigInput(
        name="sdk-bot",  # the SDK's config.name: the endpoint's name again
        served_entities=[
            serving.ServedEntityInput(
                name="stub",
                external_model=serving.ExternalModel(
                    provider=serving.ExternalModelProvider.OPENAI,
                    name="stub",
                    task="llm/v1/chat",
                    openai_config=serving.OpenAiConfig(openai_api_base=deployment.stub.base_url),
                ),
            )
        ],
    )
    created = w.serving_endpoints.create_and_wait(
        name="sdk-bot", config=config, timeout=timedelta(seconds=60)
    )
    assert created.name == "sdk-bot" and created.state is not None
    assert created.state.ready == serving.EndpointStateReady.READY
    tags = w.serving_endpoints.patch(
        "sdk-bot", add_tags=[serving.EndpointTag(key="team", value="kyoto")]
    )
    assert [(t.key, t.value) for t in tags.tags or []] == [("team", "kyoto")]
    reply = w.serving_endpoints.query(
        "sdk-bot", messages=[serving.ChatMessage(role=serving.ChatMessageRole.USER, content="hi")]
    )
    assert reply.choices and REPLY in (reply.choices[0].message.content or "")
    got = w.serving_endpoints.get("sdk-bot")
    assert got.config is not None and [e.name for e in got.config.served_entities or []] == ["stub"]
    openai_client = w.serving_endpoints.get_open_ai_client()
    chat = openai_client.chat.completions.create(
        model="sdk-bot", messages=[{"role": "user", "content": "hi"}]
    )
    assert REPLY in (chat.choices[0].message.content or "")
    w.serving_endpoints.delete("sdk-bot")


@pytest.mark.compat(
    "databricks-sdk", "OAuth machine-to-machine login (`client_id` + `client_secret`)"
)
def test_oauth_m2m_login(deployment: Deployment) -> None:
    with deployment.server.admin() as admin:
        made = admin.post(f"{SCIM}/ServicePrincipals", json={"displayName": "sdk-robot"})
        assert made.status_code == 201, made.text
        secret = admin.post(
            f"/api/2.0/accounts/servicePrincipals/{made.json()['id']}/credentials/secrets"
        ).json()
    robot = WorkspaceClient(
        host=deployment.server.url,
        client_id=secret["client_id"],
        client_secret=secret["secret"],
        auth_type="oauth-m2m",
    )
    assert robot.current_user.me().display_name == "sdk-robot"


@pytest.mark.compat(
    "databricks-sdk",
    "`statement_execution.execute_statement`: EXTERNAL_LINKS + ARROW_STREAM, `query_tags`, "
    "`byte_limit`, service error codes",
)
def test_statement_execution(w: WorkspaceClient) -> None:
    run = w.statement_execution.execute_statement(
        statement="SELECT 'kyoto' AS city, 42 AS n",
        warehouse_id="bastion",
        disposition=dbsql.Disposition.EXTERNAL_LINKS,
        format=dbsql.Format.ARROW_STREAM,
        query_tags=[dbsql.QueryTag(key="team", value="kyoto")],
        wait_timeout="30s",
    )
    assert run.status and run.status.state == dbsql.StatementState.SUCCEEDED
    assert run.result and run.result.external_links
    link = run.result.external_links[0]
    data = httpx.get(link.external_link or "", timeout=30).content  # presigned: no credential
    table = pa.ipc.open_stream(data).read_all()
    assert table.to_pylist() == [{"city": "kyoto", "n": 42}]

    inline = w.statement_execution.execute_statement(
        statement="SELECT 'x' AS a UNION ALL SELECT 'y'",
        warehouse_id="bastion",
        byte_limit=1,
        wait_timeout="30s",
    )
    assert inline.manifest and inline.manifest.truncated

    denied = w.statement_execution.execute_statement(
        statement="SELECT * FROM main.default.assistant_payload_secret",
        warehouse_id="bastion",
        wait_timeout="30s",
    )
    assert denied.status and denied.status.state == dbsql.StatementState.FAILED
    assert denied.status.error and denied.status.error.error_code in (
        dbsql.ServiceErrorCode.BAD_REQUEST,
        dbsql.ServiceErrorCode.NOT_FOUND,
    )


@pytest.mark.compat("databricks-sdk", "Unity Catalog `functions` create / get / list / delete")
def test_functions(w: WorkspaceClient, user_may_create: None) -> None:
    info = w.functions.create(
        function_info=catalog.CreateFunction(
            name="greet",
            catalog_name="main",
            schema_name="default",
            input_params=catalog.FunctionParameterInfos(
                parameters=[
                    catalog.FunctionParameterInfo(
                        name="who",
                        type_text="string",
                        type_name=catalog.ColumnTypeName.STRING,
                        position=0,
                    )
                ]
            ),
            data_type=catalog.ColumnTypeName.STRING,
            full_data_type="string",
            routine_body=catalog.CreateFunctionRoutineBody.SQL,
            routine_definition="concat('hello ', who)",
            parameter_style=catalog.CreateFunctionParameterStyle.S,
            is_deterministic=True,
            sql_data_access=catalog.CreateFunctionSqlDataAccess.CONTAINS_SQL,
            is_null_call=False,
            security_type=catalog.CreateFunctionSecurityType.DEFINER,
            specific_name="greet",
        )
    )
    assert info.full_name == "main.default.greet" and info.owner == USER
    assert w.functions.get("main.default.greet").routine_definition == "CONCAT('hello ', who)"
    assert "main.default.greet" in [
        f.full_name for f in w.functions.list(catalog_name="main", schema_name="default")
    ]
    run = w.statement_execution.execute_statement(
        statement="SELECT main.default.greet('kyoto') AS g", warehouse_id="b", wait_timeout="30s"
    )
    assert run.result and run.result.data_array == [["hello kyoto"]]
    w.functions.delete("main.default.greet")
    with pytest.raises(NotFound):
        w.functions.get("main.default.greet")


@pytest.mark.compat(
    "databricks-sdk", "Unity Catalog `volumes` create / read / list / update / delete"
)
def test_volumes(w: WorkspaceClient, deployment: Deployment, user_may_create: None) -> None:
    volume = w.volumes.create(
        catalog_name="main",
        schema_name="default",
        name="landing",
        volume_type=catalog.VolumeType.MANAGED,
        comment="raw files",
    )
    assert volume.full_name == "main.default.landing" and volume.owner == USER
    assert w.volumes.read("main.default.landing").comment == "raw files"
    assert [v.name for v in w.volumes.list(catalog_name="main", schema_name="default")] == [
        "landing"
    ]
    assert w.volumes.update("main.default.landing", comment="staged").comment == "staged"
    # Another user sees nothing of it without a grant.
    from conftest import create_user

    _, other = create_user(deployment.server, "other@example.com")
    stranger = WorkspaceClient(host=deployment.server.url, token=other, auth_type="pat")
    with pytest.raises(PermissionDenied):
        stranger.volumes.read("main.default.landing")
    w.volumes.delete("main.default.landing")
    with pytest.raises(NotFound):
        w.volumes.read("main.default.landing")


@pytest.mark.compat("databricks-sdk", "errors raised as the SDK's types")
def test_errors_are_the_sdks_types(w: WorkspaceClient) -> None:
    with pytest.raises(NotFound):
        w.serving_endpoints.get("no-such-endpoint")
    with pytest.raises(PermissionDenied):
        w.catalogs.create(name="mine")  # only admins create catalogs
