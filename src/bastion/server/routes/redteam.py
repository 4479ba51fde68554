"""Red-team scans over REST: ``/api/2.0/redteam/scans``.

``POST /scans`` runs a scan inside the server, in a background thread, with a short-lived
token minted for the caller (revoked when the scan ends): the scan can query exactly what
the caller can. ``PUT /scans/{id}`` and ``POST /scans/{id}/results`` store a scan that the
CLI ran in its own process (the caller needs CAN_QUERY on the scanned endpoint). Reading
needs to be the scan's requester or an admin.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.errors import BastionError, InvalidRequest, NotFound, PermissionDenied, RateLimited
from bastion.fields import Int32, Int64
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.identity.credentials import PAT_PREFIX
from bastion.identity.model import SCAN_ATTRIBUTE, Caller, TokenRecord
from bastion.platform import Platform
from bastion.redteam.scan import ScanConfig, Scanner, new_scan_id, scorecard_for
from bastion.redteam.scorecard import diff_scans
from bastion.redteam.store import (
    RESULT_COLUMNS,
    SCAN_COLUMNS,
    WriterSink,
    attack_result,
    clean_row,
    decode_json,
    ensure_results_view,
    read_results,
    read_scans,
    utcnow,
)
from bastion.server.auth import authenticated, platform_of
from bastion.serving.gateway.app import QUERY_SCOPES

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/2.0/redteam", tags=["redteam"])

SCOPE = "redteam"
MAX_RUNNING_PER_USER = 2  # scans run in server threads: one user may not fill the server
SCAN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_BATCH = 1000
TOKEN_LIFETIME_S = 3600


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartScan(_Strict):
    endpoint: str = Field(min_length=1, max_length=256)
    risk_categories: list[str] | str | None = None
    strategies: list[str] | str | None = None
    num_objectives: Int32 | None = None
    judge: str | None = None
    judge_endpoint: str | None = None
    attacker_endpoint: str | None = None
    concurrency: Int32 | None = None
    threshold: Int32 | None = None
    thresholds: dict[str, Int32] | None = None
    seed: Int64 | None = None
    max_tokens: Int32 | None = None
    system_prompt: str | None = Field(default=None, max_length=100_000)
    seed_prompts: list[Any] | None = Field(default=None, max_length=5000)
    judge_calibration: dict[str, Any] | None = None
    escalate_below: float | None = Field(default=None, ge=0.5, le=1.0)
    objectives_file: str | None = Field(default=None, max_length=255)
    scan_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class ResumeScan(_Strict):
    concurrency: Int32 | None = None


class ScanRecordBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str
    endpoint_name: str


class ResultsBody(_Strict):
    results: list[dict[str, Any]] = Field(max_length=MAX_BATCH)


class CredentialsBody(_Strict):
    endpoint_name: str = Field(min_length=1, max_length=256)


# -- running scans --------------------------------------------------------------------------


@dataclass
class RunningScan:
    scan_id: str
    requester: str
    config: ScanConfig
    created_at: str
    status: str = "running"
    total: int = 0
    done: int = 0
    succeeded: int = 0
    errors: int = 0
    message: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)
    scanner: Scanner | None = field(default=None, repr=False)

    # ScanProgress
    def started(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def advanced(self, row: Mapping[str, Any]) -> None:
        self.done += 1
        if row.get("error") is not None:
            self.errors += 1
        elif row.get("attack_success") is True:
            self.succeeded += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "status": self.status,
            "endpoint_name": self.config.endpoint,
            "requester": self.requester,
            "created_at": self.created_at,
            "risk_categories": list(self.config.risk_categories),
            "strategies": list(self.config.strategies),
            "num_objectives": self.config.num_objectives,
            "judge": self.config.judge,
            "progress": {
                "total": self.total,
                "done": self.done,
                "succeeded": self.succeeded,
                "errors": self.errors,
            },
            "message": self.message,
        }


class ScanManager:
    """The scans this server process is running; one per platform."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.gateway_url: str | None = None  # tests may point scans at another gateway
        self._lock = threading.Lock()
        self._running: dict[str, RunningScan] = {}
        self.owners: dict[str, str | None] = {}  # scan id -> requester, once known

    def get(self, scan_id: str) -> RunningScan | None:
        with self._lock:
            return self._running.get(scan_id)

    def running(self) -> list[RunningScan]:
        with self._lock:
            return [s for s in self._running.values() if s.status == "running"]

    def start(
        self,
        caller: Caller,
        config: ScanConfig,
        host: str,
        *,
        scan_id: str | None = None,
        previous: list[dict[str, Any]] | None = None,
        created_at: str | None = None,
    ) -> RunningScan:
        if not any(caller.has_scope(s) for s in QUERY_SCOPES):
            raise PermissionDenied(
                f"The credential may not query serving endpoints, so it may not query "
                f"endpoint '{config.endpoint}' (scope 'serving.serving-endpoints' is needed)."
            )
        require_can_query(self.platform, caller, config.endpoint)
        mine = [s for s in self.running() if s.requester == caller.name]
        if len(mine) >= MAX_RUNNING_PER_USER:
            raise RateLimited(
                f"You have {len(mine)} scans running (at most {MAX_RUNNING_PER_USER} at once); "
                "wait for one to finish."
            )
        for extra in (config.judge_endpoint, config.attacker_endpoint):
            if extra:
                require_can_query(self.platform, caller, extra)
        scan_id = scan_id or new_scan_id()
        with self._lock:
            current = self._running.get(scan_id)
            if current is not None and current.status == "running":
                raise InvalidRequest(f"Scan '{scan_id}' is already running.")
            state = RunningScan(scan_id, caller.name, config, created_at or utcnow().isoformat())
            self._running[scan_id] = state
        token, record = scan_credential(self.platform, caller, scan_id)
        state.scanner = Scanner(
            config,
            host=self.gateway_url or host,
            token=token,
            scan_id=scan_id,
            sink=WriterSink(self.platform),
            progress=state,
            requester=caller.name,
            previous=previous or [],
            created_at=state.created_at,
            batch_size=1,
        )
        state.thread = threading.Thread(
            target=self._run, args=(state, record.token_id), name=f"redteam-{scan_id}", daemon=True
        )
        state.thread.start()
        return state

    def _run(self, state: RunningScan, token_id: str) -> None:
        assert state.scanner is not None
        try:
            report = state.scanner.run()
            state.status = report.status
        except BastionError as exc:
            state.status, state.message = "failed", exc.message
        except Exception as exc:  # recorded, never lost in a thread
            logger.exception("red-team scan %s failed", state.scan_id)
            state.status, state.message = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(BastionError):
                self.platform.identity.revoke_token(token_id, None)
            ensure_results_view(self.platform)


def scan_credential(platform: Platform, caller: Caller, scan_id: str) -> tuple[str, TokenRecord]:
    """A short-lived token of ``caller`` that belongs to scan ``scan_id``: the gateway tags
    every request made with it as that scan's (and accepts scan tags from nothing else).
    It can only query serving endpoints, and dies with the credential that asked for it."""
    if not any(caller.has_scope(s) for s in QUERY_SCOPES):
        raise PermissionDenied(
            "The credential may not query serving endpoints (scope "
            "'serving.serving-endpoints' is needed), so it cannot run a scan."
        )
    return platform.identity.create_token(
        caller.principal_id,
        kind="pat",
        prefix=PAT_PREFIX,
        lifetime_s=TOKEN_LIFETIME_S,
        comment=f"redteam scan {scan_id}",
        scopes=(QUERY_SCOPES[0],),
        parent_id=caller.credential_id,
        attributes={SCAN_ATTRIBUTE: scan_id},
    )


def own_url(request: Request) -> str:
    """This server's address as the socket it answered on, for a scan running inside it.

    Never the request's ``Host`` header: a scan sends its credential with every request,
    and a client-chosen host would receive it (and make the server call anywhere).
    """
    server = request.scope.get("server")
    if not server:
        raise InvalidRequest("The server's own address is unknown; run the scan from the CLI.")
    host, port = server[0], server[1]
    if ":" in str(host):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def manager_of(platform: Platform) -> ScanManager:
    manager = getattr(platform, "redteam_scans", None)
    if isinstance(manager, ScanManager):
        return manager
    manager = ScanManager(platform)
    platform.redteam_scans = manager  # type: ignore[attr-defined]
    return manager


def require_can_query(platform: Platform, caller: Caller, endpoint: str) -> None:
    """The gateway's own rule: the caller needs CAN_QUERY on the endpoint."""
    try:
        node = platform.authorizer.node(SecurableType.SERVING_ENDPOINT, endpoint)
        allowed = Privilege.CAN_QUERY in platform.authorizer.effective(caller, node)
    except NotFound:
        allowed = False
    if not allowed:
        raise PermissionDenied(
            f"User {caller.name} may not query endpoint '{endpoint}' (CAN_QUERY is needed), "
            "or it does not exist; a red-team scan needs to query it."
        )


# -- reading --------------------------------------------------------------------------------


def _may_read(caller: Caller, requester: str | None) -> bool:
    return caller.is_admin or requester == caller.name


def _stored(platform: Platform, caller: Caller, scan_id: str) -> dict[str, Any] | None:
    rows = read_scans(platform, [scan_id])
    if not rows:
        return None
    if not _may_read(caller, rows[0].get("requester")):
        raise PermissionDenied(f"User {caller.name} may not read scan '{scan_id}'.")
    return rows[0]


def _scan_view(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    out["scorecard"] = decode_json(record.get("scorecard"))
    out["parameters"] = decode_json(record.get("parameters"))
    return out


def get_scan(platform: Platform, caller: Caller, scan_id: str) -> dict[str, Any]:
    running = manager_of(platform).get(scan_id)
    if running is not None and running.status == "running":
        if not _may_read(caller, running.requester):
            raise PermissionDenied(f"User {caller.name} may not read scan '{scan_id}'.")
        return running.to_dict()
    stored = _stored(platform, caller, scan_id)
    if stored is None:
        if running is not None and _may_read(caller, running.requester):
            return running.to_dict()  # failed before it wrote anything
        raise NotFound(f"Red-team scan '{scan_id}' does not exist.")
    view = _scan_view(stored)
    if running is not None and running.message and not view.get("message"):
        view["message"] = running.message
    return view


def _owner(platform: Platform, scan_id: str) -> str | None:
    """Who started the scan: running here, stored, or a client-run scan seen posting rows."""
    manager = manager_of(platform)
    running = manager.get(scan_id)
    if running is not None:
        return running.requester
    if scan_id in manager.owners:
        return manager.owners[scan_id]
    stored = read_scans(platform, [scan_id])
    if stored:
        owner = stored[0].get("requester")
        manager.owners[scan_id] = owner
        return owner
    return None


def _results(platform: Platform, caller: Caller, scan_id: str) -> list[dict[str, Any]]:
    owner = _owner(platform, scan_id)
    rows = read_results(platform, scan_id)
    if owner is None and not (rows and caller.is_admin):
        raise NotFound(f"Red-team scan '{scan_id}' does not exist.")
    if owner is not None and not _may_read(caller, owner):
        raise PermissionDenied(f"User {caller.name} may not read scan '{scan_id}'.")
    return rows


def _claim(platform: Platform, caller: Caller, scan_id: str) -> None:
    """A client-run scan belongs to whoever stored it first."""
    owner = _owner(platform, scan_id)
    if owner is not None and owner != caller.name:
        raise PermissionDenied(f"Scan '{scan_id}' belongs to another user.")
    manager_of(platform).owners[scan_id] = caller.name


# -- routes ---------------------------------------------------------------------------------


@router.post("/scans")
def start_scan(
    body: StartScan,
    request: Request,
    caller: Caller = Depends(authenticated(SCOPE)),
) -> dict[str, Any]:
    """Start a scan in the background; poll ``GET /scans/{scan_id}``."""
    platform = platform_of(request)
    options = body.model_dump(exclude_none=True, exclude={"scan_id"})
    config = ScanConfig.from_parameters(options)
    if body.scan_id and read_scans(platform, [body.scan_id]):
        raise InvalidRequest(f"Scan '{body.scan_id}' exists; resume it instead.")
    state = manager_of(platform).start(caller, config, own_url(request), scan_id=body.scan_id)
    return state.to_dict()


@router.post("/scans/{scan_id}/resume")
def resume_scan(
    scan_id: str,
    request: Request,
    body: ResumeScan | None = None,
    caller: Caller = Depends(authenticated(SCOPE)),
) -> dict[str, Any]:
    """Continue an interrupted scan; attacks already in the results table are skipped."""
    platform = platform_of(request)
    stored = _stored(platform, caller, scan_id)
    if stored is None:
        raise NotFound(f"Red-team scan '{scan_id}' has no record to resume from.")
    if stored.get("requester") != caller.name:
        raise PermissionDenied("Only the user who started a scan may resume it.")
    parameters = decode_json(stored.get("parameters")) or {}
    if body is not None and body.concurrency is not None:
        parameters["concurrency"] = body.concurrency
    config = ScanConfig.from_parameters(parameters)
    state = manager_of(platform).start(
        caller,
        config,
        own_url(request),
        scan_id=scan_id,
        previous=read_results(platform, scan_id),
        created_at=stored.get("created_at"),
    )
    return state.to_dict()


@router.get("/scans")
def list_scans(
    request: Request, caller: Caller = Depends(authenticated(f"{SCOPE}:read"))
) -> dict[str, Any]:
    platform = platform_of(request)
    running = [
        s.to_dict() for s in manager_of(platform).running() if _may_read(caller, s.requester)
    ]
    seen = {s["scan_id"] for s in running}
    stored = [
        {k: v for k, v in r.items() if k not in ("scorecard", "parameters")}
        for r in read_scans(platform)
        if r["scan_id"] not in seen and _may_read(caller, r.get("requester"))
    ]
    return {"scans": running + stored}


@router.get("/scans/{scan_id}")
def read_scan(
    scan_id: str, request: Request, caller: Caller = Depends(authenticated(f"{SCOPE}:read"))
) -> dict[str, Any]:
    return get_scan(platform_of(request), caller, scan_id)


@router.get("/scans/{scan_id}/results")
def scan_results(
    scan_id: str, request: Request, caller: Caller = Depends(authenticated(f"{SCOPE}:read"))
) -> dict[str, Any]:
    return {"results": _results(platform_of(request), caller, scan_id)}


@router.get("/scans/{scan_a}/diff/{scan_b}")
def diff(
    scan_a: str,
    scan_b: str,
    request: Request,
    caller: Caller = Depends(authenticated(f"{SCOPE}:read")),
) -> dict[str, Any]:
    """What changed from ``scan_a`` (before) to ``scan_b`` (after)."""
    platform = platform_of(request)
    before = [attack_result(r) for r in _results(platform, caller, scan_a)]
    after = [attack_result(r) for r in _results(platform, caller, scan_b)]
    return {"scan_a": scan_a, "scan_b": scan_b, **diff_scans(before, after).to_dict()}


@router.put("/scans/{scan_id}")
def put_scan(
    scan_id: str,
    body: ScanRecordBody,
    request: Request,
    caller: Caller = Depends(authenticated(SCOPE)),
) -> dict[str, Any]:
    """Store the record of a scan run by a client (the CLI); requester is the caller."""
    platform = platform_of(request)
    require_can_query(platform, caller, body.endpoint_name)
    _claim(platform, caller, scan_id)
    record = clean_row(body.model_dump(), SCAN_COLUMNS)
    record.update(scan_id=scan_id, requester=caller.name)
    for key in ("scorecard", "parameters"):
        if record.get(key) is not None and not isinstance(record[key], str):
            record[key] = json.dumps(record[key])
    record.setdefault("finished_at", utcnow().isoformat())
    WriterSink(platform).finish(record)
    ensure_results_view(platform)
    return {"scan_id": scan_id, "status": record["status"]}


@router.post("/scans/{scan_id}/credentials")
def scan_credentials(
    scan_id: str,
    body: CredentialsBody,
    request: Request,
    caller: Caller = Depends(authenticated(SCOPE)),
) -> dict[str, Any]:
    """A token for a scan run by a client (the CLI): its requests are tagged as this scan's.

    The scan id becomes the caller's (a scan someone else owns is refused), as for ``PUT``.
    """
    platform = platform_of(request)
    if not SCAN_ID.match(scan_id):
        raise InvalidRequest("A scan id is 1-64 letters, digits, '_' or '-'.")
    require_can_query(platform, caller, body.endpoint_name)
    _claim(platform, caller, scan_id)
    token, record = scan_credential(platform, caller, scan_id)
    return {"scan_id": scan_id, "token_value": token, "expiry_time": record.expires_at}


@router.post("/scans/{scan_id}/results")
def post_results(
    scan_id: str,
    body: ResultsBody,
    request: Request,
    caller: Caller = Depends(authenticated(SCOPE)),
) -> dict[str, Any]:
    """Append a batch of result rows of a client-run scan (``result_id`` = ``scan_id:n``)."""
    platform = platform_of(request)
    rows = []
    for index, raw in enumerate(body.results):
        row = clean_row(raw, RESULT_COLUMNS)
        row["scan_id"] = scan_id
        n = row.get("n")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidRequest(f"results[{index}] needs a positive integer 'n'.")
        row["result_id"] = f"{scan_id}:{n}"
        try:
            attack_result(row)
        except (KeyError, ValueError, BastionError) as exc:
            raise InvalidRequest(f"results[{index}] is not a result row: {exc}") from None
        if not isinstance(row.get("endpoint_name"), str):
            raise InvalidRequest(f"results[{index}] needs 'endpoint_name'.")
        rows.append(row)
    for endpoint in sorted({r["endpoint_name"] for r in rows}):
        require_can_query(platform, caller, endpoint)
    _claim(platform, caller, scan_id)
    WriterSink(platform).results(rows)
    return {"scan_id": scan_id, "appended": len(rows)}


__all__ = ["ScanManager", "manager_of", "router", "scorecard_for"]
