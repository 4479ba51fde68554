"""The one typed configuration object, read once from the environment (``BASTION_*``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything Bastion can be configured with. Each field maps to ``BASTION_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="BASTION_", extra="ignore", populate_by_name=True)

    home: Path = Field(
        default=Path(".bastion"),
        description="Directory holding the metastore, signing key, warehouse and logs.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metastore; default: SQLite file in BASTION_HOME.",
    )
    bind_host: str = Field(
        default="127.0.0.1",
        description="Address the server binds to (BASTION_BIND_HOST). Not BASTION_HOST, which "
        "is the URL clients and the CLI use to reach a server.",
    )
    port: int = Field(default=8000, description="Port the server listens on.")
    secret_key_file: Path | None = Field(
        default=None,
        description="File with the JWT signing key; default: BASTION_HOME/secret.key.",
    )
    admin_password: str | None = Field(
        default=None, description="Initial admin password (for automation); random if unset."
    )
    admin_token: str | None = Field(
        default=None, description="Initial admin personal access token; random if unset."
    )
    access_token_ttl_s: int = Field(default=3600, description="Lifetime of OAuth access tokens.")
    refresh_token_ttl_s: int = Field(
        default=7 * 24 * 3600, description="Lifetime of OAuth refresh tokens."
    )
    max_token_lifetime_s: int = Field(
        default=365 * 24 * 3600, description="Longest lifetime a personal access token may have."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, description="Largest request body the control-plane APIs accept."
    )
    login_max_failures: int = Field(
        default=5, description="Failed logins per user and address before a lockout."
    )
    login_lockout_s: int = Field(default=300, description="Length of a login lockout.")
    cache_poll_interval_s: float = Field(
        default=1.0,
        description="How often a replica polls the metastore's change counter for other "
        "replicas' changes (0 disables polling). With BASTION_REDIS_URL, changes are also "
        "pushed at once; polling stays on as the backstop.",
    )

    # -- several processes and replicas (docs/deploy.md) ------------------------------------
    workers: int = Field(
        default=0,
        ge=0,
        description="Server processes `bastion up` runs on one port. 0 (the default): one per "
        "usable CPU core, at most 4, when BASTION_REDIS_URL is set; 1 without Redis, whose "
        "processes could not share rate-limit and budget counters.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis shared by every process and replica (redis://[:password@]host:port/"
        "db, rediss:// for TLS): rate-limit counters, budget spend, cache invalidation. "
        "Unset: counters live in each process (one-process deployments).",
    )
    redis_unavailable: Literal["refuse", "admit"] = Field(
        default="refuse",
        description="What a request to an endpoint with rate limits or reject budgets gets "
        "while Redis is unreachable: 'refuse' (503, the default: a limit or budget never "
        "silently stops holding) or 'admit' (served uncounted). Counted in /metrics either way.",
    )
    wal_dir: Path | None = Field(
        default=None,
        description="Directory of the durable writer's write-ahead logs (default "
        "BASTION_HOME/wal). Each server process claims a slot of its own in it; keep it on "
        "a persistent local disk of the replica.",
    )
    leader_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="How often a process that is not the leader tries to take the leader "
        "lease (and the leader checks that it still holds it).",
    )

    # -- what user input may make the server read or reach (docs/security.md) ----------------
    staging_max_file_bytes: int = Field(
        default=16 * 1024**3, gt=0, description="Largest single file a user may upload."
    )
    staging_quota_bytes: int = Field(
        default=64 * 1024**3, gt=0, description="Most bytes one principal may keep staged."
    )
    model_source_roots: list[Path] = Field(
        default_factory=list,
        description="Server folders any user with CREATE MODEL may register model versions "
        "from (JSON list, e.g. '[\"/srv/models\"]'). Never BASTION_HOME. Default: none; "
        "users upload into their staging area instead.",
    )
    max_artifact_bytes: int = Field(
        default=64 * 1024**3, gt=0, description="Largest model version artifact (all files)."
    )
    max_artifact_files: int = Field(
        default=10_000, gt=0, description="Most files in one model version artifact."
    )
    egress_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts every user's URLs may reach even on internal addresses (JSON list "
        "of names, '*.suffix' patterns, IPs or CIDRs, e.g. '[\"vllm.internal\", "
        "\"10.2.0.0/16\"]'). Admins' URLs are never restricted.",
    )
    egress_allow_private: bool = Field(
        default=False,
        description="Let every user's URLs reach loopback, private and link-local addresses "
        "(single-user development only; never on a shared server).",
    )

    writer_flush_rows: int = Field(
        default=10_000, description="Rows a table's write-ahead log gathers before a Delta commit."
    )
    writer_flush_interval_s: float = Field(
        default=2.0, description="Longest a logged row waits before its Delta commit."
    )

    # -- where Delta tables live (docs/storage.md); the writer's WAL stays in BASTION_HOME ---
    table_storage: str | None = Field(
        default=None,
        description="Where every Delta table lives: a local folder, or s3://bucket/prefix on "
        "an S3-compatible object store (AWS S3, MinIO, R2...). Default: BASTION_HOME/warehouse.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BASTION_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"),
        description="Endpoint of an S3-compatible store (e.g. http://minio:9000); unset for "
        "AWS S3. Also read from AWS_ENDPOINT_URL.",
    )
    s3_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BASTION_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="Region of the bucket. Also read from AWS_REGION / AWS_DEFAULT_REGION.",
    )
    s3_access_key_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("BASTION_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        description="Access key; unset on AWS to use the usual credential chain (instance or "
        "pod role, profile). Also read from AWS_ACCESS_KEY_ID.",
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BASTION_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
        description="Secret key (never logged). Also read from AWS_SECRET_ACCESS_KEY.",
    )
    s3_session_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("BASTION_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"),
        description="Session token of temporary credentials. Also read from AWS_SESSION_TOKEN.",
    )
    s3_allow_http: bool = Field(
        default=False,
        validation_alias=AliasChoices("BASTION_S3_ALLOW_HTTP", "AWS_ALLOW_HTTP"),
        description="Allow a plain-HTTP endpoint (a store on loopback or a private network).",
    )
    s3_virtual_hosted_style: bool = Field(
        default=False,
        description="Address the bucket as bucket.endpoint instead of endpoint/bucket.",
    )
    s3_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest one request to the object store may take, retries included; "
        "a commit that fails stays in the writer's WAL and is retried later.",
    )
    s3_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest a connection to the object store may take."
    )
    s3_allow_unsafe_rename: bool = Field(
        default=False,
        description="For a store without conditional writes (If-None-Match) only, and only "
        "with ONE writing replica: commit without put-if-absent. Two replicas writing then "
        "lose commits. See docs/storage.md.",
    )
    writer_commit_process: bool = Field(
        default=True,
        description="Convert and commit logged rows to Delta in a helper process (one per "
        "server process), so that the server's requests never wait for that work; false: "
        "commit in the server process (docs/writer.md, docs/benchmarks.md).",
    )
    writer_commit_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="How much lower the commit helper's CPU priority is than its server "
        "process's (a nice increment, 0-19): on a busy host requests run first and commits "
        "catch up after (docs/writer.md).",
    )
    writer_compact_min_files: int = Field(
        default=50,
        ge=0,
        description="The leader process rewrites a logged table's small Delta files into "
        "bigger ones once it holds this many, after its commits to it (0: never; "
        "docs/writer.md).",
    )

    gil_switch_interval_ms: float = Field(
        default=0.2,
        gt=0,
        description=(
            "How long a thread may hold the GIL before another may run (Python's default is "
            "5 ms). Short, so the writer's and tracer's background work cannot hold a request "
            "up for long: p99 gateway latency drops from ~30 ms to ~10 ms at concurrency 1."
        ),
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector to export gateway spans to (e.g. http://otel:4318).",
    )
    otlp_headers: str | None = Field(
        default=None, description="Headers for the OTLP export, as k1=v1,k2=v2."
    )
    otel_service_name: str | None = Field(
        default=None, description="service.name of exported spans (default bastion-gateway)."
    )

    # -- governed SQL: worker processes, fair share, bounded results (docs/sql.md) --------
    sql_workers: int = Field(
        default=3,
        ge=1,
        description="SQL worker processes that execute governed statements (started on first "
        "use); each runs one statement at a time.",
    )
    sql_worker_threads: int = Field(
        default=2, ge=1, description="DuckDB threads of each SQL worker."
    )
    sql_worker_memory_limit_mb: int = Field(
        default=768,
        ge=16,
        description="DuckDB memory_limit of each SQL worker, in MiB (operators: hash tables, "
        "sorts, aggregates).",
    )
    sql_worker_address_space_mb: int = Field(
        default=2304,
        ge=256,
        description="RLIMIT_AS of each SQL worker, in MiB: bounds every allocation, including "
        "the string values DuckDB's memory_limit does not track (a 2 GB repeat() fails at "
        "once). A worker starts at ~0.6 GiB of address space; statements using all of a "
        "768 MiB memory_limit peaked at ~1.95 GiB. Raise both together.",
    )
    sql_worker_grace_s: float = Field(
        default=5.0,
        gt=0,
        description="How long a SQL worker may take to stop an interrupted statement "
        "(deadline, cancel) before it is killed and replaced.",
    )
    sql_statement_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Default timeout of a SQL statement, time waiting for a worker included.",
    )
    sql_max_running_per_principal: int = Field(
        default=2,
        ge=1,
        description="SQL statements one principal may execute at once; the others wait, and a "
        "freed worker goes to the waiting principal with the fewest running.",
    )
    sql_max_outstanding_per_principal: int = Field(
        default=8,
        ge=1,
        description="Statement Execution API statements one principal may have running or "
        "waiting; more are refused with 429.",
    )
    sql_max_outstanding: int = Field(
        default=64,
        ge=1,
        description="Statement Execution API statements the server keeps running or waiting "
        "in all (one thread each); more are refused with 429.",
    )
    sql_inline_result_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest result a statement may return inline (Arrow bytes; Databricks: "
        "25 MiB). A larger one fails unless byte_limit truncates it.",
    )
    sql_retained_result_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="Total result bytes the Statement Execution API keeps for polling; past it "
        "the oldest results are released and their statements become CLOSED.",
    )
    # Statement Execution API clients (databricks-sql-connector, databricks-sdk): sessions
    # and EXTERNAL_LINKS results.
    sql_external_result_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1024,
        description="Largest result an EXTERNAL_LINKS statement may produce (Arrow bytes; "
        "Databricks allows 100 GiB, Bastion keeps results in memory). A larger one fails "
        "unless byte_limit truncates it.",
    )
    sql_external_chunk_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1,
        description="About how many Arrow bytes each EXTERNAL_LINKS result chunk holds.",
    )
    sql_external_link_ttl_s: int = Field(
        default=900,
        ge=1,
        le=86400,
        description="How long a presigned EXTERNAL_LINKS chunk URL stays valid (Databricks: "
        "15 minutes).",
    )
    sql_max_sessions_per_principal: int = Field(
        default=64,
        ge=1,
        description="Open SQL sessions (POST /api/2.0/sql/sessions) one principal may hold; "
        "more are refused with 429.",
    )
    sql_session_idle_s: int = Field(
        default=3600,
        ge=1,
        description="A SQL session unused this long is closed.",
    )

    # -- apps and the app proxy (docs/apps.md) ------------------------------------------------
    app_source_roots: list[Path] = Field(
        default_factory=list,
        description="Server folders an app's CAN_MANAGE holder may deploy from as well as "
        "their own staging area (JSON list). Never BASTION_HOME. Default: none.",
    )
    app_max_source_bytes: int = Field(
        default=1024**3, gt=0, description="Largest app source (all files) a deployment copies."
    )
    app_max_source_files: int = Field(
        default=20_000, gt=0, description="Most files in one app deployment."
    )
    app_startup_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a starting app may take to listen on its port before it is "
        "killed and restarted.",
    )
    app_session_ttl_s: int = Field(
        default=12 * 3600,
        gt=0,
        description="Lifetime of a browser login session (the HttpOnly session cookie).",
    )
    app_token_ttl_s: int = Field(
        default=3600,
        gt=0,
        description="Lifetime of the X-Forwarded-Access-Token an app receives for its user "
        "(also bounded by the login session, which ends it on logout).",
    )
    app_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) besides the request's own host from which "
        "browsers may open WebSockets to apps, e.g. the public URL behind a TLS proxy.",
    )
    dashboard: bool = Field(
        default=True,
        description="Deploy the built-in operations dashboard (app 'dashboard') on 'bastion up'.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'metastore.db').resolve()}"

    @property
    def resolved_secret_key_file(self) -> Path:
        return self.secret_key_file or self.home / "secret.key"

    @property
    def warehouse_dir(self) -> Path:
        return self.home / "warehouse"

    @property
    def resolved_wal_dir(self) -> Path:
        return self.wal_dir or self.home / "wal"

    @property
    def redis(self) -> str | None:
        """The Redis URL, password included: pass it to clients, never to a log."""
        return self.redis_url.get_secret_value() if self.redis_url else None

    @property
    def resolved_workers(self) -> int:
        """How many server processes ``bastion up`` starts (``workers``, or the default)."""
        if self.workers:
            return self.workers
        if self.redis is None:
            return 1
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, min(cores, 4))

    @property
    def host(self) -> str:
        """The address the server binds to (``bind_host``)."""
        return self.bind_host

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"
