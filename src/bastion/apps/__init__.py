"""Apps: user code (Streamlit, FastAPI, anything that serves HTTP) run by Bastion as
supervised processes behind its authenticating proxy at ``/apps/<name>/``, each with its own
service principal, resources granted to that principal, and — when it declares
``user_api_scopes`` — a short-lived token for the signed-in user on every request.
See docs/apps.md.
"""

from __future__ import annotations

from bastion.apps.model import (
    USER_API_SCOPES,
    ApplicationState,
    AppRecord,
    AppResource,
    ComputeState,
    DeploymentRecord,
    DeploymentState,
)
from bastion.apps.service import AppsControl, app_info, apps_of, deployment_info
from bastion.apps.supervisor import ProcessState

__all__ = [
    "USER_API_SCOPES",
    "AppRecord",
    "AppResource",
    "ApplicationState",
    "AppsControl",
    "ComputeState",
    "DeploymentRecord",
    "DeploymentState",
    "ProcessState",
    "app_info",
    "apps_of",
    "deployment_info",
]
