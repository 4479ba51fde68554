"""``GET /api/2.0/bastion/status`` (admins): this server and the processes it supervises."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, Depends, Request

from bastion.apps import apps_of
from bastion.identity.model import Caller
from bastion.processes import process_memory
from bastion.processes.proc import rss_bytes
from bastion.server.auth import authenticated, platform_of, require_admin
from bastion.serving.control import serving_of

router = APIRouter(prefix="/api/2.0/bastion", tags=["accounts"])
_STARTED = time.time()


@router.get("/status", name="get_status")
def status(
    request: Request, caller: Caller = Depends(authenticated("access.status:read"))
) -> dict[str, Any]:
    """The server process and every supervised child: kind, key, pid, state, restarts,
    resident memory (the child's whole process group), port, and the last error."""
    require_admin(caller)
    platform = platform_of(request)
    now = time.monotonic()
    processes = []
    for worker in serving_of(platform).supervisor.workers():
        pid = worker.pid
        processes.append(
            {
                "kind": "model_worker",
                "key": worker.spec.key,
                "pid": pid,
                "state": worker.state.value,
                "restarts": worker.restarts,
                "rss_bytes": process_memory(pid) if pid else 0,
                "port": worker.port,
                "uptime_s": round(now - worker.started_at, 1) if pid else None,
                "last_error": worker.last_error,
            }
        )
    for app in apps_of(platform).supervisor.processes():
        pid = app.pid
        processes.append(
            {
                "kind": "app",
                "key": app.name,
                "pid": pid,
                "state": app.state.value,
                "restarts": app.restarts,
                "rss_bytes": process_memory(pid) if pid else 0,
                "port": app.port,
                "uptime_s": round(now - app.started_at, 1) if pid else None,
                "last_error": app.last_error,
            }
        )
    return {
        "server": {
            "pid": os.getpid(),
            "uptime_s": round(time.time() - _STARTED, 1),
            "rss_bytes": rss_bytes(os.getpid()),
            "home": str(platform.settings.home.resolve()),
        },
        "processes": processes,
    }
