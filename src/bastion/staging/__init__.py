"""Staging: each principal's own upload area, and the only server paths user input may name.

A model version's ``source`` (and, later, an app's deployment source or a bundle's artifact)
is either ``staging:<path>`` — a file or folder the caller uploaded into *their own* area
(``PUT /api/2.0/bastion/staging/files/<path>``) — or a path under a source root the
administrator configured (``BASTION_MODEL_SOURCE_ROOTS``). Anything else, however it is spelt,
gets the same error, so an answer never tells which server files exist.
"""

from __future__ import annotations

from bastion.staging.area import StagingArea, staging_of
from bastion.staging.sources import STAGING_SCHEME, resolve_source

__all__ = ["STAGING_SCHEME", "StagingArea", "resolve_source", "staging_of"]
