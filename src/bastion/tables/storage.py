"""Where Delta tables live: a folder (``BASTION_HOME/warehouse`` by default) or an S3 bucket.

One :class:`TableStorage` per process, built from :class:`~bastion.settings.Settings` by
:meth:`TableStorage.from_settings`. It is the only place that

- names a table's location: ``<root>/<catalog>/<schema>/<table>``, from validated name parts,
  so no user input ever becomes a path or an object key of its own;
- builds delta-rs's ``storage_options`` (endpoint, region, credentials) — every open, create,
  append and read of a Delta table passes them;
- says whether a location is *managed* (under the root, so Bastion may delete it) and removes
  a managed table's files.

Concurrent appends from several replicas are safe on S3 because delta-rs writes each commit
file ``_delta_log/<version>.json`` with a conditional put (``If-None-Match: *``): of two
replicas committing the same version one wins and the other re-reads the log and retries at
the next version. See ``docs/storage.md``.

>>> import tempfile
>>> storage = TableStorage(tempfile.mkdtemp())
>>> storage.location("main.default.t") == storage.root + "/main/default/t"
True
>>> storage.is_managed(storage.location("main.default.t")), storage.is_managed("/etc")
(True, False)
>>> TableStorage("s3://bucket/prefix/").root
's3://bucket/prefix'
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from deltalake.exceptions import TableNotFoundError

from bastion.errors import BastionError, InvalidRequest, NotFound, Unavailable

if TYPE_CHECKING:
    from bastion.settings import Settings

logger = logging.getLogger(__name__)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

OBJECT_STORE_SCHEMES = ("s3", "s3a")


class StorageUnavailable(Unavailable):
    """The table storage could not be reached (or refused the configured credentials)."""


class TableStorage:
    """The root every Delta table lives under, and how delta-rs reaches it.

    ``root`` is an absolute local path or ``s3://bucket[/prefix]`` (no trailing slash);
    ``options`` are delta-rs ``storage_options`` (credentials among them: never log them).
    ``local_warehouse`` is a local folder Bastion also owns (tables created there before the
    storage moved to an object store stay managed: dropping them still deletes their files).
    """

    def __init__(
        self,
        root: str,
        options: Mapping[str, str] | None = None,
        *,
        local_warehouse: Path | None = None,
    ) -> None:
        scheme = urlsplit(root).scheme.lower() if "://" in root else ""
        if scheme in OBJECT_STORE_SCHEMES:
            parts = urlsplit(root)
            if "@" in parts.netloc:  # never echoed: the part before "@" is a credential
                raise InvalidRequest(
                    "BASTION_TABLE_STORAGE must not carry credentials (s3://key:secret@...); "
                    "set BASTION_S3_ACCESS_KEY_ID and BASTION_S3_SECRET_ACCESS_KEY instead."
                )
            if not parts.netloc or parts.query or parts.fragment:
                raise InvalidRequest(
                    f"BASTION_TABLE_STORAGE={root!r} is not a valid location; "
                    "use s3://bucket or s3://bucket/prefix."
                )
            prefix = parts.path.strip("/")
            self.root = f"s3://{parts.netloc}" + (f"/{prefix}" if prefix else "")
            self.is_local = False
        elif scheme in ("", "file"):
            path = Path(urlsplit(root).path if scheme == "file" else root)
            self.root = str(path.expanduser().resolve())
            self.is_local = True
        else:
            raise InvalidRequest(
                f"BASTION_TABLE_STORAGE={root!r}: the scheme {scheme!r} is not supported; "
                "use a local folder or s3://bucket/prefix (see docs/storage.md)."
            )
        self.options: Mapping[str, str] = MappingProxyType(dict(options or {}))
        self._local_warehouse = local_warehouse.resolve() if local_warehouse else None

    @classmethod
    def from_settings(cls, settings: Settings) -> TableStorage:
        """The storage ``BASTION_TABLE_STORAGE`` names (default: ``BASTION_HOME/warehouse``)."""
        warehouse = settings.warehouse_dir
        if not settings.table_storage:
            return cls(str(warehouse), local_warehouse=warehouse)
        storage = cls(settings.table_storage, local_warehouse=warehouse)
        if not storage.is_local:
            storage.options = MappingProxyType(storage_options(settings))
        return storage

    def __repr__(self) -> str:  # never the options: they hold credentials
        return f"TableStorage({self.root!r})"

    @property
    def uses_object_store(self) -> bool:
        return not self.is_local

    def location(self, full_name: str) -> str:
        """The location of table ``catalog.schema.table`` (name parts already validated)."""
        parts = full_name.split(".")
        if len(parts) != 3 or any(not p or "/" in p or p in (".", "..") for p in parts):
            raise InvalidRequest(f"{full_name!r} is not a table name (catalog.schema.table).")
        return "/".join([self.root, *parts])

    def options_for(self, location: str) -> dict[str, str] | None:
        """The ``storage_options`` to open ``location`` with (none for a local path)."""
        return dict(self.options) if "://" in location and self.options else None

    def is_managed(self, location: str) -> bool:
        """Whether ``location`` is a table folder Bastion owns (under the root)."""
        if "://" in location:
            if self.is_local or not location.startswith(self.root + "/"):
                return False
            rest = location[len(self.root) + 1 :].split("/")
            return all(part not in ("", ".", "..") for part in rest)
        path = Path(location).resolve()
        roots = [Path(self.root)] if self.is_local else []
        if self._local_warehouse is not None:
            roots.append(self._local_warehouse)
        return any(path != root and path.is_relative_to(root) for root in roots)

    def prepare(self, location: str) -> None:
        """Make ready for a new table at ``location`` (a local folder is created, owner-only)."""
        if "://" not in location:
            Path(location).mkdir(mode=0o700, parents=True, exist_ok=True)

    def remove(self, location: str) -> None:
        """Delete every file of the managed table at ``location``; a missing one is fine."""
        if not self.is_managed(location):
            raise InvalidRequest("Only a managed table's files can be removed.")
        if "://" not in location:
            shutil.rmtree(location, ignore_errors=True)
            return
        from deltalake.fs import DeltaStorageHandler

        with reachable("delete the table's files"):  # every object under "<location>/"
            DeltaStorageHandler(location, options=self._brief_options()).delete_dir("")

    def discard(self, location: str) -> None:
        """:meth:`remove` for a table already dropped from the catalog: a store that cannot be
        reached now leaves the files behind (logged; creating a table of that name again
        removes them first) instead of failing the drop."""
        try:
            self.remove(location)
        except StorageUnavailable:
            logger.warning("the files of dropped table %s stay until its name is reused", location)

    def check(self) -> None:
        """Fail with one clear line unless the storage can be reached (at start-up).

        On an object store this lists the root, so a wrong endpoint, a missing bucket or a
        refused credential is reported before the server takes requests.
        """
        if self.is_local:
            Path(self.root).mkdir(mode=0o700, parents=True, exist_ok=True)
            return
        from deltalake.fs import DeltaStorageHandler
        from pyarrow.fs import FileSelector

        try:
            handler = DeltaStorageHandler(self.root, options=self._brief_options())
            handler.get_file_info_selector(FileSelector("", allow_not_found=True))
        except Exception as exc:
            raise StorageUnavailable(
                f"The table storage {self.root} cannot be reached: {_one_line(exc)}"
            ) from None

    def _brief_options(self) -> dict[str, str]:
        """Options for delta-rs's file-system handler (listing, deleting), which holds the GIL
        while it waits on the store: one retry, and every request bounded by the connect
        timeout, so a store that is down stalls the process for seconds, not for
        ``BASTION_S3_TIMEOUT_S`` (a wrong endpoint at start-up fails fast, too)."""
        brief = self.options.get("connect_timeout", "5s")
        return {**self.options, "max_retries": "1", "timeout": brief, "retry_timeout": brief}


def storage_options(settings: Settings) -> dict[str, str]:
    """delta-rs ``storage_options`` for an S3-compatible store, from ``settings``.

    Conditional put is asked for explicitly (``If-None-Match: *`` on each commit file), so
    concurrent appends from several replicas never overwrite each other's commits.
    """
    options: dict[str, str] = {
        "conditional_put": "etag",
        "timeout": _duration(settings.s3_timeout_s),
        "retry_timeout": _duration(settings.s3_timeout_s),
        "connect_timeout": _duration(settings.s3_connect_timeout_s),
    }
    if settings.s3_endpoint_url:
        options["aws_endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_region:
        options["aws_region"] = settings.s3_region
    if settings.s3_access_key_id:
        options["aws_access_key_id"] = settings.s3_access_key_id
    if settings.s3_secret_access_key is not None:
        options["aws_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    if settings.s3_session_token is not None:
        options["aws_session_token"] = settings.s3_session_token.get_secret_value()
    if settings.s3_allow_http:
        options["aws_allow_http"] = "true"
    if settings.s3_virtual_hosted_style:
        options["aws_virtual_hosted_style_request"] = "true"
    if settings.s3_allow_unsafe_rename:
        options["aws_s3_allow_unsafe_rename"] = "true"
    return options


@contextlib.contextmanager
def reachable(doing: str) -> Iterator[None]:
    """Map storage failures while ``doing`` something to API errors: a missing table is
    :class:`NotFound`, anything else the store raised is :class:`StorageUnavailable` (503),
    whose message names no endpoint, bucket or credential (the log has the detail)."""
    try:
        yield
    except BastionError:
        raise
    except TableNotFoundError:
        raise NotFound(f"Could not {doing}: the table's data does not exist.") from None
    except Exception as exc:
        logger.warning("table storage failed to %s: %s", doing, _one_line(exc))
        raise StorageUnavailable(
            f"Could not {doing}: the table storage is not reachable now; try again shortly."
        ) from None


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _one_line(exc: BaseException) -> str:
    """delta-rs's error (several indented, coloured lines) as one plain line."""
    text = _ANSI.sub("", str(exc)).replace("↳", " ")
    return " ".join(text.split())[:500] or type(exc).__name__
