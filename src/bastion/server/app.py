"""The application factory: the app proxy, then the gateway's data plane, in front of the
FastAPI control plane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from bastion.apps import apps_of
from bastion.observability.exchange import Exchange
from bastion.observability.inference import InferenceLogger
from bastion.observability.metrics import Metrics
from bastion.observability.tracing import tracer_for
from bastion.platform import Platform
from bastion.query import engine_of
from bastion.redteam.store import ensure_redteam_tables
from bastion.server import errors
from bastion.server.cluster import Cluster, ClusterCollector, close_shared
from bastion.server.middleware import RequestContextMiddleware
from bastion.server.proxy import AppProxy
from bastion.server.routes import (
    apps,
    audit,
    budgets,
    bundles,
    catalogs,
    endpoints,
    functions,
    health,
    login,
    metrics,
    oidc,
    permissions,
    redteam,
    registry,
    scim,
    secrets,
    staging,
    statements,
    status,
    tables,
    tokens,
    traces,
    volumes,
)
from bastion.server.sessions import sessions_of
from bastion.server.sql_sessions import SessionStore
from bastion.server.statements import StatementManager
from bastion.serving.control.routing import Upstream
from bastion.serving.control.service import serving_of
from bastion.serving.gateway.app import Gateway
from bastion.settings import Settings


def create_app(settings: Settings, platform: Platform | None = None) -> ASGIApp:
    """Build the server for ``settings``; pass ``platform`` to share one with the caller."""
    owned = platform is None
    services = platform or Platform(settings)
    ensure_redteam_tables(services)
    serving = serving_of(services)
    cluster = Cluster(services, serving)  # leader election; the leader's duties
    inference = InferenceLogger(services)
    tracer = tracer_for(services)
    observed = Metrics(services.writer)
    engine = engine_of(services)
    settings = services.settings
    app_control = apps_of(services)
    statement_manager = StatementManager(
        lambda caller, text, params, limit, byte_limit, cancel, external: engine.execute(
            caller,
            text,
            params,
            row_limit=limit,
            byte_limit=byte_limit,
            cancel=cancel,
            max_bytes=settings.sql_external_result_bytes if external else None,
        ),
        max_outstanding=settings.sql_max_outstanding,
        max_outstanding_per_principal=settings.sql_max_outstanding_per_principal,
        retained_result_bytes=settings.sql_retained_result_bytes,
        chunk_bytes=settings.sql_external_chunk_bytes,
        link_ttl_s=settings.sql_external_link_ttl_s,
    )
    sql_sessions = SessionStore(
        max_per_principal=settings.sql_max_sessions_per_principal,
        idle_s=settings.sql_session_idle_s,
    )

    def log(exchange: Exchange) -> None:
        tracer.record(exchange)  # first: it sets the trace id the payload row carries
        inference.log(exchange)
        observed.observe(exchange)

    def upstream_failed(entity: Upstream) -> None:
        if entity.worker_key:
            serving.supervisor.notify_failure(entity.worker_key)

    gateway: Gateway
    proxy: AppProxy

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.start()
        cluster.start()
        serving.start()
        app_control.start()
        yield
        await proxy.aclose()
        app_control.stop()
        await gateway.upstreams.aclose()
        await close_shared(gateway.limiter, gateway.budgets)
        cluster.stop()
        gateway.budgets.close()
        services.budgets = None  # type: ignore[attr-defined]  # a later app gets a fresh one
        statement_manager.close()
        engine.close()
        services.query = None  # type: ignore[attr-defined]  # a later app gets a fresh pool
        tracer.close()
        serving.stop()
        if owned:
            services.close()

    app = FastAPI(
        title="Bastion",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.platform = services
    app.state.metrics = observed
    app.state.statements = statement_manager
    app.state.sql_sessions = sql_sessions
    app.state.tracer = tracer
    errors.install(app)
    for module in (
        health,
        oidc,
        scim,
        tokens,
        catalogs,
        tables,
        permissions,
        audit,
        redteam,
        bundles,
        statements,
        registry,
        secrets,
        staging,
        status,
        endpoints,
        budgets,
        metrics,
        traces,
        functions,
        volumes,
        apps,
        login,
    ):
        app.include_router(module.router)
    app.include_router(scim.secrets_router)
    app.include_router(statements.connector_router)
    app.add_middleware(RequestContextMiddleware, platform=services)
    gateway = Gateway(services, serving.router, app, log=log, on_upstream_failure=upstream_failed)
    observed.registry.register(ClusterCollector(services, cluster, gateway.budgets))
    # The app proxy in front: /apps/<name>/ is answered before anything else is parsed.
    proxy = AppProxy(gateway, services, app_control, sessions_of(services))
    return proxy
