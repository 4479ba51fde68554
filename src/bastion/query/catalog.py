"""Catalog metadata the planner needs, cached per metastore generation, and table data.

Everything here is *after* authorization: the planner asks for an object's properties or
data only once the caller's privileges on it have been checked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pyarrow.dataset as ds
import sqlglot
from deltalake import DeltaTable
from sqlglot import exp

from bastion.errors import InvalidRequest, NotFound
from bastion.governance.authorizer import Node
from bastion.governance.securables import SecurableType
from bastion.governance.store import SecurableInfo
from bastion.platform import Platform


class CatalogCache:
    """Securable properties, parsed view and function bodies, and open Delta tables."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._lock = threading.Lock()
        self._generation = -1
        self._infos: dict[tuple[SecurableType, str], SecurableInfo] = {}
        self._parsed: dict[tuple[str, str], exp.Expr] = {}
        self._tables: dict[str, DeltaTable] = {}
        self._datasets: dict[tuple[str, int], ds.Dataset] = {}

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

    def dataset(self, location: str) -> ds.Dataset:
        """The current snapshot of the Delta table at ``location`` as an Arrow dataset."""
        with self._lock:
            table = self._tables.get(location)
            try:
                if table is None:
                    table = DeltaTable(location)
                    self._tables[location] = table
                else:
                    table.update_incremental()
            except Exception as error:  # a missing or unreadable table directory
                raise NotFound(f"The data of this table cannot be read: {error}") from None
            key = (location, table.version())
            dataset = self._datasets.get(key)
            if dataset is None:
                dataset = table.to_pyarrow_dataset()
                for old in [k for k in self._datasets if k[0] == location]:
                    del self._datasets[old]
                self._datasets[key] = dataset
            return dataset

    def forget(self, location: str) -> None:
        with self._lock:
            self._tables.pop(location, None)
