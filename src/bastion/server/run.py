"""``bastion up``: initialise on first run, print how to log in, and serve."""

from __future__ import annotations

import gc
import logging
import sys

import uvicorn
from rich.console import Console

from bastion import dashboard
from bastion.apps import apps_of
from bastion.bootstrap import ADMIN_USER, InitialCredentials, initialize
from bastion.platform import Platform
from bastion.server.app import create_app
from bastion.serving.control.bootstrap import bootstrap_default_model
from bastion.settings import Settings

logger = logging.getLogger(__name__)


def _welcome(settings: Settings, credentials: InitialCredentials | None) -> str:
    url = settings.base_url
    lines = [f"Bastion is starting at [bold]{url}[/bold] (home: {settings.home.resolve()})."]
    if credentials is not None:
        supplied = "(as given in {})"
        lines += [
            "",
            "First run: an admin was created. Generated credentials are shown [bold]once[/bold];"
            " store them now.",
            f"  user name:  {credentials.user_name}",
            f"  password:   {credentials.password or supplied.format('BASTION_ADMIN_PASSWORD')}",
            f"  token:      {credentials.token or supplied.format('BASTION_ADMIN_TOKEN')}",
            "",
            "Use the token from the CLI or any SDK:",
            f"  bastion configure --host {url} --token <token>",
            f"  curl -H 'Authorization: Bearer <token>' {url}/api/2.0/preview/scim/v2/Me",
        ]
    else:
        lines += ["Log in with the admin credentials printed on the first run."]
    if settings.dashboard:
        lines += [f"Dashboard: {url}/apps/dashboard/ (sign in with a user name and password)"]
    lines += [f"API docs: {url}/api/docs"]
    return "\n".join(lines)


def deploy_dashboard(platform: Platform) -> None:
    """The built-in operations dashboard, as the app ``dashboard`` usable by ``users``: its
    current code is deployed on every start."""
    admin = platform.identity_cache.active_caller(ADMIN_USER)
    if admin is None:
        logger.warning("no active admin: the built-in dashboard is not deployed")
        return
    apps_of(platform).ensure_builtin(
        dashboard.NAME,
        dashboard.APP_DIR,
        owner=admin,
        description="Bastion's operations dashboard: traffic, risk, traces, endpoints, audit.",
        user_api_scopes=dashboard.USER_API_SCOPES,
        usable_by_group=dashboard.USABLE_BY,
    )


def serve(settings: Settings, *, default_model: bool = True) -> None:
    sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    platform = Platform(settings)
    credentials = initialize(platform)
    if default_model:
        bootstrap_default_model(platform)
    if settings.dashboard:
        deploy_dashboard(platform)
    Console(soft_wrap=True).print(_welcome(settings, credentials), highlight=False)
    app = create_app(settings, platform)
    # Everything built so far (modules, metastore, caches) lives as long as the process: keep
    # it out of the cyclic collector's full passes, which otherwise stall requests for tens
    # of milliseconds each.
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=False,
            server_header=False,
        )
    finally:
        platform.close()
