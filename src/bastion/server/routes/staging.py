"""Each principal's staging area: ``/api/2.0/bastion/staging/files[/<path>]``.

Upload a file with ``PUT`` (the raw bytes as the body, streamed to disk), list with ``GET``,
remove with ``DELETE``. What is staged can then be named as ``staging:<path>`` where an API
takes a source (model versions). Nobody sees or names another principal's staged files.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from bastion.identity.model import Caller
from bastion.server.auth import authenticated, platform_of
from bastion.staging import STAGING_SCHEME, staging_of
from bastion.staging.area import StagedFile

PREFIX = "/api/2.0/bastion/staging/files"
router = APIRouter(prefix=PREFIX, tags=["files"])
WRITE = "files"
READ = "files:read"


def _info(staged: StagedFile) -> dict[str, Any]:
    return {
        "path": staged.path,
        "source": f"{STAGING_SCHEME}{staged.path}",
        "file_size": staged.size,
        "last_modified": staged.modified_ms,
    }


@router.put("/{path:path}", name="upload_staged_file")
async def upload(
    request: Request,
    path: str,
    overwrite: bool = False,
    caller: Caller = Depends(authenticated(WRITE)),
) -> dict[str, Any]:
    area = staging_of(platform_of(request))
    staged = await area.write(caller.principal_id, path, request.stream(), overwrite=overwrite)
    return _info(staged)


@router.get("", name="list_staged_files")
def list_files(
    request: Request, prefix: str | None = None, caller: Caller = Depends(authenticated(READ))
) -> dict[str, Any]:
    area = staging_of(platform_of(request))
    return {"files": [_info(f) for f in area.list(caller.principal_id, prefix)]}


@router.delete("/{path:path}", name="delete_staged_file")
def delete(
    request: Request, path: str, caller: Caller = Depends(authenticated(WRITE))
) -> dict[str, Any]:
    staging_of(platform_of(request)).delete(caller.principal_id, path)
    return {}
