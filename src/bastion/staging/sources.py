"""The one function that turns a user-given source into a server path, or refuses."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bastion.errors import BastionError, InvalidRequest
from bastion.staging.area import StagingArea, clean_relative

STAGING_SCHEME = "staging:"
REFUSED = (
    "The source must be a file or folder in your staging area, written 'staging:<path>' "
    "(upload it with `bastion models register` or PUT /api/2.0/bastion/staging/files/<path>), "
    "or lie under a source root the administrator configured (BASTION_MODEL_SOURCE_ROOTS)."
)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def resolve_source(
    area: StagingArea,
    principal_id: int,
    text: str,
    *,
    roots: Sequence[Path] = (),
    home: Path | None = None,
) -> Path:
    """The real path of ``text`` if the caller may have the server read it.

    ``staging:<path>`` resolves inside the caller's own staging area; an absolute path only
    inside a configured root, and never inside ``BASTION_HOME`` (the metastore, keys, other
    users' files). Symbolic links are resolved before the check; what is refused — missing,
    forbidden, not a regular file or folder — gets one and the same error.
    """
    if not isinstance(text, str) or "\0" in text or not text.strip():
        raise InvalidRequest(REFUSED)
    text = text.strip()
    try:
        if text.startswith(STAGING_SCHEME):
            relative = clean_relative(text[len(STAGING_SCHEME) :])
            allowed = [os.path.realpath(area.directory(principal_id))]
            candidate = os.path.realpath(area.directory(principal_id) / relative)
        else:
            if not os.path.isabs(text):
                raise InvalidRequest(REFUSED)
            allowed = [os.path.realpath(r) for r in roots]
            candidate = os.path.realpath(text)
            if home is not None and _inside(candidate, os.path.realpath(home)):
                raise InvalidRequest(REFUSED)
    except (BastionError, OSError, ValueError):
        raise InvalidRequest(REFUSED) from None
    if not any(_inside(candidate, root) for root in allowed):
        raise InvalidRequest(REFUSED)
    path = Path(candidate)
    try:
        if not (path.is_file() or path.is_dir()):
            raise InvalidRequest(REFUSED)
    except OSError:
        raise InvalidRequest(REFUSED) from None
    return path
