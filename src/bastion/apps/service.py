"""The apps of one server: records, service principals, resources, deployments, processes.

>>> apps = apps_of(platform)
>>> apps.create(caller, "hello", user_api_scopes=["sql"])
>>> apps.deploy(caller, "hello", "staging:apps/hello.tar.gz")   # builds, then starts it
>>> apps.supervisor.get("hello").port                             # where the proxy sends
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.apps.environment import base_environment, ensure_venv, venv_for
from bastion.apps.model import (
    ApplicationState,
    AppRecord,
    AppResource,
    ComputeState,
    DeploymentRecord,
    DeploymentState,
    validate_app_name,
    validate_scopes,
)
from bastion.apps.resources import apply_grants, check_declarable, resolve_env, resource_values
from bastion.apps.sources import SourceLimits, app_root, snapshot
from bastion.apps.spec import PORT_VARIABLES, AppSpec, load_spec, substitute_port
from bastion.apps.store import AppStore
from bastion.apps.supervisor import AppSupervisor, LaunchSpec, ProcessState
from bastion.errors import BastionError, Conflict, InvalidRequest, NotFound, PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GrantChange
from bastion.identity.model import Caller, PrincipalKind
from bastion.staging import resolve_source, staging_of

if TYPE_CHECKING:
    from bastion.platform import Platform

logger = logging.getLogger(__name__)

#: Environment an app may not set itself in app.yaml: its identity and where it listens.
RESERVED_ENV = frozenset(
    {
        *PORT_VARIABLES,
        "BASTION_APP_NAME",
        "DATABRICKS_APP_NAME",
        "BASTION_HOST",
        "DATABRICKS_HOST",
        "BASTION_CLIENT_ID",
        "BASTION_CLIENT_SECRET",
        "DATABRICKS_CLIENT_ID",
        "DATABRICKS_CLIENT_SECRET",
        "BASTION_TOKEN",
        "DATABRICKS_TOKEN",
        "BASTION_APP_BASE_PATH",
        "PATH",
        "HOME",
    }
)
PROXY_PREFIX = "/apps"


@dataclass(frozen=True)
class AppStatus:
    app_state: ApplicationState
    app_message: str
    compute_state: ComputeState
    compute_message: str


class AppsControl:
    """Owns this process's app processes. ``start()`` in the app lifespan, ``stop()`` after."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        settings = platform.settings
        self.store = AppStore(platform.metastore, platform.governance, platform.clock)
        self.root = settings.home / "apps"
        self.limits = SourceLimits(settings.app_max_source_bytes, settings.app_max_source_files)
        self.supervisor = AppSupervisor(
            settings.home / "logs" / "apps",
            self._prepare,
            run_dir=settings.home / "run",
            startup_timeout_s=settings.app_startup_timeout_s,
        )
        self._lock = threading.Lock()
        self._deploying: dict[str, str] = {}
        self._view: tuple[int, dict[str, AppRecord]] | None = None
        platform.authenticator.acting_app_scopes = self.current_scopes

    # -- the in-memory view the proxy and the authenticator read ------------------------------

    def records(self) -> dict[str, AppRecord]:
        generation = self.platform.metastore.generation
        view = self._view
        if view is None or view[0] != generation:
            view = (generation, {r.name: r for r in self.store.all()})
            self._view = view
        return view[1]

    def find(self, name: str) -> AppRecord | None:
        return self.records().get(name)

    def current_scopes(self, name: str) -> frozenset[str] | None:
        """The scopes a token acting through app ``name`` has now (None: no such app)."""
        record = self.find(name)
        return frozenset(record.effective_user_api_scopes) if record is not None else None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.store.abandon_in_progress()
        self.supervisor.start()
        for record in self.store.all():
            if record.compute_desired == "ACTIVE" and record.active_deployment_id:
                self.supervisor.run(record.name)

    def stop(self) -> None:
        self.supervisor.stop_all()

    # -- authorization ------------------------------------------------------------------------

    def level(self, caller: Caller, record: AppRecord) -> Privilege | None:
        node = self.platform.authorizer.node(SecurableType.APP, record.name)
        held = self.platform.authorizer.effective(caller, node)
        for level in (Privilege.CAN_MANAGE, Privilege.CAN_USE):
            if level in held:
                return level
        return None

    def require(self, caller: Caller, name: str, needed: Privilege) -> AppRecord:
        record = self.store.get(name)
        level = self.level(caller, record)
        if level is None or (needed is Privilege.CAN_MANAGE and level is not Privilege.CAN_MANAGE):
            raise PermissionDenied(
                f"User {caller.name} does not have {needed.value} on app '{name}'."
            )
        return record

    # -- records ------------------------------------------------------------------------------

    def create(
        self,
        caller: Caller,
        name: str,
        *,
        description: str | None = None,
        user_api_scopes: list[str] | None = None,
        resources: list[AppResource] | None = None,
    ) -> AppRecord:
        name = validate_app_name(name)
        scopes = validate_scopes(user_api_scopes)
        declared = list(resources or [])
        check_declarable(self.platform, caller, declared)
        identity = self.platform.identity
        if identity.find(f"app-{name}") is not None:
            raise Conflict(f"A principal named 'app-{name}' already exists.")
        principal = identity.create_service_principal(f"app-{name}")
        try:
            record = self.store.create(
                name,
                description=description,
                user_api_scopes=scopes,
                resources=declared,
                service_principal_id=principal.id,
                owner_id=caller.principal_id,
                creator=caller.name,
            )
        except BaseException:
            identity.delete(principal.id, PrincipalKind.SERVICE_PRINCIPAL)
            raise
        apply_grants(self.platform, record, caller, (), declared)
        return record

    def update(
        self,
        caller: Caller,
        name: str,
        *,
        description: str | None = None,
        user_api_scopes: list[str] | None = None,
        resources: list[AppResource] | None = None,
    ) -> AppRecord:
        record = self.require(caller, name, Privilege.CAN_MANAGE)
        scopes = validate_scopes(user_api_scopes) if user_api_scopes is not None else None
        if resources is not None:
            check_declarable(self.platform, caller, resources)
        updated = self.store.update(
            name,
            updater=caller.name,
            **({"description": description} if description is not None else {}),
            user_api_scopes=scopes,
            resources=resources,
            resources_set_by=caller.principal_id if resources is not None else None,
        )
        if resources is not None:
            apply_grants(self.platform, updated, caller, record.resources, resources)
        return updated

    def delete(self, caller: Caller, name: str) -> None:
        record = self.require(caller, name, Privilege.CAN_MANAGE)
        self.supervisor.stop(name)
        self.store.delete(name)
        if record.service_principal_id is not None:
            try:
                self.platform.identity.delete(
                    record.service_principal_id, PrincipalKind.SERVICE_PRINCIPAL
                )
            except (NotFound, InvalidRequest):
                logger.warning("app %s: its service principal could not be deleted", name)
        shutil.rmtree(self.root / name, ignore_errors=True)

    # -- deployments --------------------------------------------------------------------------

    def deploy(
        self, caller: Caller, name: str, source_code_path: str, mode: str = "SNAPSHOT"
    ) -> DeploymentRecord:
        """Snapshot the source, check its app.yaml, then install and start it in the
        background; the deployment is ``IN_PROGRESS`` until then."""
        record = self.require(caller, name, Privilege.CAN_MANAGE)
        if mode != "SNAPSHOT":
            raise InvalidRequest("Only mode SNAPSHOT is supported: deploy again to update.")
        source = resolve_source(
            staging_of(self.platform),
            caller.principal_id,
            source_code_path,
            roots=self.platform.settings.app_source_roots,
            home=self.platform.settings.home,
        )
        return self._deploy(record, source, source_code_path, caller.name)

    def deploy_trusted(self, name: str, source: Path, creator: str) -> DeploymentRecord:
        """Deploy a folder the server itself ships (the built-in dashboard)."""
        return self._deploy(self.store.get(name), source, str(source), creator, wait=True)

    def _deploy(
        self, record: AppRecord, source: Path, label: str, creator: str, *, wait: bool = False
    ) -> DeploymentRecord:
        with self._lock:
            if record.name in self._deploying:
                raise Conflict(
                    f"App '{record.name}' has a deployment in progress "
                    f"({self._deploying[record.name]}); wait for it to finish."
                )
            deployment_id = uuid.uuid4().hex
            self._deploying[record.name] = deployment_id
        try:
            folder = self.root / record.name / "deployments" / deployment_id
            snapshot(source, folder, self.limits)
            spec = self._checked_spec(record, app_root(folder))
            deployment = self.store.add_deployment(
                record,
                deployment_id=deployment_id,
                source_code_path=label,
                mode="SNAPSHOT",
                command=spec.command,
                env=spec.env,
                creator=creator,
            )
        except BaseException:
            with self._lock:
                self._deploying.pop(record.name, None)
            shutil.rmtree(self.root / record.name / "deployments" / deployment_id, True)
            raise
        worker = threading.Thread(
            target=self._finish, args=(record.name, deployment), name="bastion-app-deploy"
        )
        worker.start()
        if wait:
            worker.join()
            return self.store.deployment(record, deployment_id)
        return deployment

    def _checked_spec(self, record: AppRecord, folder: Path) -> AppSpec:
        spec = load_spec(folder)
        for entry in spec.env:
            if entry["name"] in RESERVED_ENV:
                raise InvalidRequest(f"app.yaml: env {entry['name']!r} is set by Bastion.")
        names = {r.name for r in record.resources}
        for entry in spec.env:
            if "valueFrom" in entry and entry["valueFrom"] not in names:
                raise InvalidRequest(
                    f"app.yaml: env {entry['name']!r} reads resource {entry['valueFrom']!r}, "
                    "which the app does not declare."
                )
        return spec

    def _finish(self, name: str, deployment: DeploymentRecord) -> None:
        try:
            try:
                folder = app_root(self.root / name / "deployments" / deployment.id)
                ensure_venv(folder, self.root / name / "venvs", self.supervisor.log_path(name))
            except BastionError as error:
                self.store.finish_deployment(deployment.id, DeploymentState.FAILED, error.message)
                return
            except Exception as exc:  # recorded on the deployment; the server goes on
                logger.exception("deployment %s of app %s failed", deployment.id, name)
                self.store.finish_deployment(deployment.id, DeploymentState.FAILED, str(exc))
                return
            self.store.finish_deployment(
                deployment.id, DeploymentState.SUCCEEDED, "App started successfully"
            )
            self.store.update(
                name,
                updater=deployment.creator,
                active_deployment_id=deployment.id,
                compute_desired="ACTIVE",
            )
            self.supervisor.run(name, restart=True)
        finally:
            # Only now: until the process is started, the app reads as DEPLOYING, never as
            # stopped between the deployment's success and its start.
            with self._lock:
                self._deploying.pop(name, None)
        self._prune(name, keep=deployment.id)

    def _prune(self, name: str, keep: str) -> None:
        folder = self.root / name / "deployments"
        for old in folder.iterdir() if folder.exists() else ():
            if old.name != keep and old.name not in self._deploying.values():
                shutil.rmtree(old, ignore_errors=True)

    # -- start and stop -----------------------------------------------------------------------

    def start_app(self, caller: Caller, name: str) -> AppRecord:
        record = self.require(caller, name, Privilege.CAN_MANAGE)
        if not record.active_deployment_id:
            raise InvalidRequest(f"App '{name}' has no deployment yet; deploy it first.")
        record = self.store.update(name, updater=caller.name, compute_desired="ACTIVE")
        self.supervisor.run(name)
        return record

    def stop_app(self, caller: Caller, name: str) -> AppRecord:
        self.require(caller, name, Privilege.CAN_MANAGE)
        record = self.store.update(name, updater=caller.name, compute_desired="STOPPED")
        self.supervisor.stop(name)
        return record

    # -- what a process needs to start ----------------------------------------------------

    def _prepare(self, name: str, port: int) -> LaunchSpec:
        record = self.store.get(name)
        if not record.active_deployment_id:
            raise InvalidRequest(f"App '{name}' has no successful deployment.")
        deployment = self.store.deployment(record, record.active_deployment_id)
        folder = app_root(self.root / name / "deployments" / deployment.id)
        if not folder.is_dir():
            raise InvalidRequest(f"The files of deployment {deployment.id} are gone; deploy again.")
        venv = venv_for(folder, self.root / name / "venvs")
        bins = [venv / "bin"] if venv is not None else []
        home = self.root / name / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = base_environment(home, bins)
        env.update(
            resolve_env(deployment.env, resource_values(self.platform, record), record.resources)
        )
        env.update(self._platform_env(record, port))
        argv = substitute_port(deployment.command, port)
        if argv[0] in ("python", "python3"):
            argv[0] = str(venv / "bin" / "python") if venv is not None else sys.executable
        else:
            found = shutil.which(argv[0], path=env["PATH"]) if "/" not in argv[0] else argv[0]
            if found is None:
                raise InvalidRequest(f"The app's command {argv[0]!r} was not found.")
            argv[0] = found
        return LaunchSpec(argv=argv, env=env, cwd=folder)

    def _platform_env(self, record: AppRecord, port: int) -> dict[str, str]:
        settings = self.platform.settings
        bind = settings.bind_host
        host = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
        url = f"http://{host}:{settings.port}"
        env = {
            "BASTION_APP_NAME": record.name,
            "DATABRICKS_APP_NAME": record.name,
            "BASTION_APP_PORT": str(port),
            "DATABRICKS_APP_PORT": str(port),
            "BASTION_HOST": url,
            "DATABRICKS_HOST": url,
            "DATABRICKS_WORKSPACE_ID": "0",
            "BASTION_APP_BASE_PATH": f"{PROXY_PREFIX}/{record.name}",
            # Streamlit and Gradio on the loopback port; the proxy does XSRF, CORS and Origin.
            "STREAMLIT_SERVER_ADDRESS": "127.0.0.1",
            "STREAMLIT_SERVER_PORT": str(port),
            "STREAMLIT_SERVER_HEADLESS": "true",
            "STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION": "false",
            "STREAMLIT_SERVER_ENABLE_CORS": "false",
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
            "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none",
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port),
        }
        if record.service_principal_id is not None:
            principal = self.platform.identity.get(record.service_principal_id)
            secret = self.platform.identity.new_client_secret(principal.id)
            for prefix in ("BASTION", "DATABRICKS"):
                env[f"{prefix}_CLIENT_ID"] = principal.name
                env[f"{prefix}_CLIENT_SECRET"] = secret
        return env

    # -- status and logs ----------------------------------------------------------------------

    def status(self, record: AppRecord) -> AppStatus:
        process = self.supervisor.get(record.name)
        deploying = record.name in self._deploying
        if process is None or process.state == ProcessState.STOPPED:
            if deploying:
                return AppStatus(
                    ApplicationState.DEPLOYING,
                    "The app is being deployed.",
                    ComputeState.STARTING,
                    "Installing the app.",
                )
            message = (
                "The app has not been deployed yet."
                if not record.active_deployment_id
                else "The app is stopped."
            )
            return AppStatus(ApplicationState.UNAVAILABLE, message, ComputeState.STOPPED, message)
        if process.state == ProcessState.STARTING:
            return AppStatus(
                ApplicationState.DEPLOYING,
                "The app is starting.",
                ComputeState.STARTING,
                "The app is starting.",
            )
        if process.state == ProcessState.RUNNING:
            return AppStatus(
                ApplicationState.RUNNING,
                "App has status: App is running",
                ComputeState.ACTIVE,
                "App compute is running.",
            )
        reason = process.last_error or "The app crashed."
        return AppStatus(ApplicationState.CRASHED, reason, ComputeState.ERROR, reason)

    def read_logs(self, name: str, offset: int, max_bytes: int) -> tuple[str, int]:
        path = self.supervisor.log_path(name)
        try:
            size = path.stat().st_size
        except OSError:
            return "", 0
        if offset < 0:
            offset = max(0, size + offset)
        if offset > size:
            offset = 0  # the log was rotated
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(max_bytes)
        return data.decode("utf-8", errors="replace"), offset + len(data)

    # -- the built-in dashboard ---------------------------------------------------------------

    def ensure_builtin(
        self,
        name: str,
        source: Path,
        *,
        owner: Caller,
        description: str,
        user_api_scopes: list[str],
        usable_by_group: str,
    ) -> AppRecord:
        """Create (on first run) and deploy the current code of an app the server ships."""
        record = self.find(name)
        if record is None:
            record = self.create(
                owner, name, description=description, user_api_scopes=user_api_scopes
            )
            group = self.platform.identity.find(usable_by_group)
            if group is not None:
                self.platform.governance.update_grants(
                    record.securable_id, [GrantChange(group.id, add=(Privilege.CAN_USE,))]
                )
        deployment = self.deploy_trusted(name, source, owner.name)
        if deployment.state is not DeploymentState.SUCCEEDED:
            logger.error("the built-in app %s did not deploy: %s", name, deployment.message)
        return self.store.get(name)

    def describe(self, record: AppRecord, level: Privilege | None) -> dict[str, Any]:
        return app_info(self, record, level)


def app_info(apps: AppsControl, record: AppRecord, level: Privilege | None) -> dict[str, Any]:
    """``App`` in Databricks' shape."""
    status = apps.status(record)
    principal = None
    if record.service_principal_id is not None:
        try:
            principal = apps.platform.identity.get(record.service_principal_id)
        except NotFound:
            principal = None
    out: dict[str, Any] = {
        "name": record.name,
        "description": record.description,
        "url": f"{PROXY_PREFIX}/{record.name}/",
        "app_status": {"state": status.app_state.value, "message": status.app_message},
        "compute_status": {"state": status.compute_state.value, "message": status.compute_message},
        "user_api_scopes": list(record.user_api_scopes),
        "effective_user_api_scopes": list(record.effective_user_api_scopes),
        "resources": [r.model_dump(exclude_none=True) for r in record.resources],
        "service_principal_id": record.service_principal_id,
        "service_principal_client_id": principal.name if principal else None,
        "service_principal_name": principal.display_name if principal else None,
        "active_deployment_id": record.active_deployment_id,
        "creator": record.creator,
        "updater": record.updater,
        "create_time": record.created_at,
        "update_time": record.updated_at,
    }
    if level is not None:
        out["permission_level"] = level.value
    return out


def deployment_info(deployment: DeploymentRecord) -> dict[str, Any]:
    return {
        "deployment_id": deployment.id,
        "source_code_path": deployment.source_code_path,
        "mode": deployment.mode,
        "status": {"state": deployment.state.value, "message": deployment.message or ""},
        "deployment_artifacts": {"source_code_path": deployment.source_code_path},
        "command": list(deployment.command),
        "creator": deployment.creator,
        "create_time": deployment.created_at,
        "update_time": deployment.updated_at,
    }


def apps_of(platform: Platform) -> AppsControl:
    """The platform's apps (``platform.apps``), created on first use."""
    apps = getattr(platform, "apps", None)
    if isinstance(apps, AppsControl):
        return apps
    apps = AppsControl(platform)
    platform.apps = apps  # type: ignore[attr-defined]
    return apps
