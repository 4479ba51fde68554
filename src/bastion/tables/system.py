"""The ``system`` catalog: platform-produced tables, written through the durable writer."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from bastion.tables.columns import arrow_type
from bastion.tables.storage import TableStorage
from bastion.tables.writer import RowExpander, TableSpec

SYSTEM_CATALOG = "system"
SYSTEM_SCHEMAS = ("access", "serving", "tracing", "redteam")


@dataclass(frozen=True)
class SystemTable:
    full_name: str
    schema: pa.Schema
    key: str
    comment: str
    columns: tuple[tuple[str, str], ...]  # (name, Databricks SQL type) as shown in the catalog
    expander: RowExpander | None = None  # rows logged in a compact form (see TableSpec)

    def spec(self, storage: TableStorage) -> TableSpec:
        """What the durable writer needs to append to this table in ``storage``."""
        return TableSpec(
            name=self.full_name,
            uri=storage.location(self.full_name),
            schema=self.schema,
            key=self.key,
            storage_options=storage.options,
            expander=self.expander,
        )


_STRING_MAP = pa.map_(pa.string(), pa.string())

AUDIT = SystemTable(
    full_name="system.access.audit",
    key="event_id",
    comment="Audit log: every state change, login and data-access decision.",
    schema=pa.schema(
        [
            pa.field("account_id", pa.string()),
            pa.field("workspace_id", pa.string()),
            pa.field("version", pa.string()),
            pa.field("event_time", pa.timestamp("us", tz="UTC")),
            pa.field("event_date", pa.date32()),
            pa.field("source_ip_address", pa.string()),
            pa.field("user_agent", pa.string()),
            pa.field("session_id", pa.string()),
            pa.field(
                "user_identity",
                pa.struct([pa.field("email", pa.string()), pa.field("subjectName", pa.string())]),
            ),
            pa.field("service_name", pa.string()),
            pa.field("action_name", pa.string()),
            pa.field("request_id", pa.string()),
            pa.field("request_params", _STRING_MAP),
            pa.field(
                "response",
                pa.struct(
                    [
                        pa.field("statusCode", pa.int32()),
                        pa.field("errorMessage", pa.string()),
                        pa.field("result", pa.string()),
                    ]
                ),
            ),
            pa.field("audit_level", pa.string()),
            pa.field("event_id", pa.string(), nullable=False),
            pa.field(
                "identity_metadata",
                pa.struct([pa.field("run_by", pa.string()), pa.field("run_as", pa.string())]),
            ),
        ]
    ),
    columns=(
        ("account_id", "string"),
        ("workspace_id", "string"),
        ("version", "string"),
        ("event_time", "timestamp"),
        ("event_date", "date"),
        ("source_ip_address", "string"),
        ("user_agent", "string"),
        ("session_id", "string"),
        ("user_identity", "struct<email:string,subjectName:string>"),
        ("service_name", "string"),
        ("action_name", "string"),
        ("request_id", "string"),
        ("request_params", "map<string,string>"),
        ("response", "struct<statusCode:int,errorMessage:string,result:string>"),
        ("audit_level", "string"),
        ("event_id", "string"),
        ("identity_metadata", "struct<run_by:string,run_as:string>"),
    ),
)


def define_table(
    full_name: str,
    key: str,
    comment: str,
    columns: list[tuple[str, str]],
    *,
    expander: RowExpander | None = None,
) -> SystemTable:
    """A platform table from (name, Databricks SQL type) pairs; ``key`` de-duplicates rows."""
    fields = [pa.field(n, arrow_type(t)[1], nullable=(n != key)) for n, t in columns]
    return SystemTable(full_name, pa.schema(fields), key, comment, tuple(columns), expander)


# One row per request to any endpoint, without payloads (Databricks' endpoint_usage shape).
ENDPOINT_USAGE = define_table(
    "system.serving.endpoint_usage",
    "databricks_request_id",
    "One row per serving request: who, which entity, tokens, status; no payloads.",
    [
        ("account_id", "string"),
        ("workspace_id", "string"),
        ("client_request_id", "string"),
        ("databricks_request_id", "string"),
        ("requester", "string"),
        ("status_code", "int"),
        ("request_time", "timestamp"),
        ("input_token_count", "bigint"),
        ("output_token_count", "bigint"),
        ("input_character_count", "bigint"),
        ("output_character_count", "bigint"),
        ("usage_context", "map<string,string>"),
        ("request_streaming", "boolean"),
        ("served_entity_id", "string"),
        ("endpoint_name", "string"),
        ("api", "string"),
        ("total_duration_ms", "bigint"),
        ("scan_type", "string"),
    ],
)

SERVED_ENTITIES = define_table(
    "system.serving.served_entities",
    "served_entity_id",
    "Served entity id -> endpoint, model and version, as first seen serving traffic.",
    [
        ("served_entity_id", "string"),
        ("account_id", "string"),
        ("workspace_id", "string"),
        ("endpoint_name", "string"),
        ("served_entity_name", "string"),
        ("entity_type", "string"),
        ("entity_name", "string"),
        ("entity_version", "string"),
        ("endpoint_config_version", "bigint"),
        ("change_time", "timestamp"),
    ],
)

# The columns of every endpoint's payload table (``<catalog>.<schema>.<prefix>_payload``).
PAYLOAD_COLUMNS: list[tuple[str, str]] = [
    ("request_id", "string"),
    ("client_request_id", "string"),
    ("request_date", "date"),
    ("request_time", "timestamp"),
    ("status_code", "int"),
    ("sampling_fraction", "double"),
    ("execution_duration_ms", "bigint"),
    ("total_duration_ms", "bigint"),
    ("request", "string"),
    ("response", "string"),
    ("logging_error_codes", "array<string>"),
    ("served_entity_id", "string"),
    ("served_entity_name", "string"),
    ("model_name", "string"),
    ("model_version", "string"),
    ("endpoint_name", "string"),
    ("requester", "string"),
    ("api", "string"),
    ("stream", "boolean"),
    ("input_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("environment", "string"),
    ("scan_type", "string"),
    ("scan_id", "string"),
    ("trace_id", "string"),
    ("usage_context", "map<string,string>"),
    ("tags", "map<string,string>"),
]


def payload_table(full_name: str) -> SystemTable:
    return define_table(
        full_name, "request_id", "Inference payloads of a serving endpoint.", PAYLOAD_COLUMNS
    )


SYSTEM_TABLES: tuple[SystemTable, ...] = (AUDIT, ENDPOINT_USAGE, SERVED_ENTITIES)
