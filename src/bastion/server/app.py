"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from bastion.platform import Platform
from bastion.server import errors
from bastion.server.middleware import RequestContextMiddleware
from bastion.server.routes import (
    audit,
    catalogs,
    health,
    oidc,
    permissions,
    scim,
    tables,
    tokens,
)
from bastion.settings import Settings


def create_app(settings: Settings, platform: Platform | None = None) -> FastAPI:
    """Build the server for ``settings``; pass ``platform`` to share one with the caller."""
    owned = platform is None
    services = platform or Platform(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.start()
        yield
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
    errors.install(app)
    for module in (health, oidc, scim, tokens, catalogs, tables, permissions, audit):
        app.include_router(module.router)
    app.include_router(scim.secrets_router)
    app.add_middleware(RequestContextMiddleware, platform=services)
    return app
