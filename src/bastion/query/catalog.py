"""Catalog metadata the planner needs, cached per metastore generation, and table data.

Everything here is *after* authorization: the planner asks for an object's properties or
data only once the caller's privileges on it have been checked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as ds
import sqlglot
from deltalake import DeltaTable
from sqlglot import exp

from bastion.errors import InvalidRequest
from bastion.governance.authorizer import Node
from bastion.governance.securables import SecurableType
from bastion.governance.store import SecurableInfo
from bastion.platform import Platform
from bastion.tables.storage import reachable


@dataclass
class DeltaSource:
    """One snapshot of a Delta table, as the runner may read it.

    ``files`` is set when DuckDB may read the snapshot's Parquet files itself (a local
    table, reader protocol 1: no deletion vectors or column mapping, not partitioned); the
    runner then scans them natively in a database allowed to open exactly those files.
    Otherwise, and for small scans, it registers ``dataset()``, an Arrow dataset. ``location``
    and ``version`` name the snapshot, so a SQL worker can open exactly this one.
    """

    schema: pa.Schema
    files: tuple[str, ...] | None
    size_bytes: int
    location: str | None = None
    version: int | None = None
    _dataset: ds.Dataset | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    @classmethod
    def of(cls, table: DeltaTable, location: str) -> DeltaSource:
        """The table's current snapshot (read now: ``table`` may move on afterwards)."""
        actions = table.get_add_actions(flatten=True)
        size = sum(v or 0 for v in actions.column("size_bytes").to_pylist())
        protocol = table.protocol()
        native = (
            "://" not in location
            and protocol.min_reader_version == 1
            and not protocol.reader_features
            and not table.metadata().partition_columns
        )
        version = table.version()
        if not native:
            dataset = table.to_pyarrow_dataset()
            return cls(dataset.schema, None, size, location, version, dataset)
        schema = pa.schema(table.schema().to_arrow())
        return cls(schema, tuple(table.file_uris()), size, location, version)

    def dataset(self) -> ds.Dataset:
        with self._lock:
            if self._dataset is None:
                self._dataset = ds.dataset(
                    list(self.files or ()), schema=self.schema, format="parquet"
                )
            return self._dataset


class CatalogCache:
    """Securable properties, parsed view and function bodies, and open Delta tables."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._lock = threading.Lock()
        self._generation = -1
        self._infos: dict[tuple[SecurableType, str], SecurableInfo] = {}
        self._parsed: dict[tuple[str, str], exp.Expr] = {}
        self._tables: dict[str, DeltaTable] = {}
        self._sources: dict[tuple[str, int], DeltaSource] = {}

    def _fresh(self) -> None:
        generation = self._platform.metastore.generation
        if generation != self._generation:
            self._infos.clear()
            self._parsed.clear()
            self._generation = generation

    def node(self, securable_type: SecurableType, full_name: str) -> Node | None:
        return self._platform.authorizer.snapshot().by_name.get((securable_type, full_name))

    def info(self, securable_type: SecurableType, full_name: str) -> SecurableInfo:
        """The securable's metadata; ``NotFound`` if it does not exist."""
        with self._lock:
            self._fresh()
            cached = self._infos.get((securable_type, full_name))
        if cached is not None:
            return cached
        info = self._platform.governance.get(securable_type, full_name)
        with self._lock:
            self._infos[(securable_type, full_name)] = info
        return info

    def parsed(
        self, key: tuple[str, str], text: str, check: Callable[[exp.Expr], None]
    ) -> exp.Expr:
        """A stored SQL text (view body, function body) parsed and checked once; a copy."""
        with self._lock:
            self._fresh()
            tree = self._parsed.get(key)
        if tree is None:
            try:
                tree = sqlglot.parse_one(text, read="databricks")
            except sqlglot.errors.ParseError as error:
                raise InvalidRequest(f"Stored definition of {key[1]} is invalid: {error}") from None
            check(tree)
            with self._lock:
                self._parsed[key] = tree
        return tree.copy()

    def source(self, location: str) -> DeltaSource:
        """The current snapshot of the Delta table at ``location``.

        A table that does not exist is :class:`NotFound`; storage that cannot be reached
        (an object store that is down) is a 503, never a 500.
        """
        storage = self._platform.table_storage
        with self._lock:
            table = self._tables.get(location)
            with reachable("read the table"):
                if table is None:
                    table = DeltaTable(location, storage_options=storage.options_for(location))
                    self._tables[location] = table
                else:
                    table.update_incremental()
            key = (location, table.version())
            source = self._sources.get(key)
            if source is None:
                with reachable("read the table"):
                    source = DeltaSource.of(table, location)
                for old in [k for k in self._sources if k[0] == location]:
                    del self._sources[old]
                self._sources[key] = source
            return source

    def forget(self, location: str) -> None:
        with self._lock:
            self._tables.pop(location, None)
