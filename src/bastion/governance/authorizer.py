"""The one authorization function every route uses, over an in-memory snapshot of grants.

Rules (Unity Catalog): admins bypass; the owner of an object, or of the catalog or schema
containing it, has every privilege on it; a grant on a catalog or schema applies to all current
and future children; there are no deny rules; using an object in a catalog needs
``USE_CATALOG`` on the catalog and ``USE_SCHEMA`` on the schema as well as the object privilege.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import select

from bastion.errors import NotFound, PermissionDenied
from bastion.governance.privileges import APPLICABLE, Privilege, expand
from bastion.governance.securables import SecurableType
from bastion.identity.model import Caller
from bastion.metastore.db import Metastore
from bastion.metastore.models import GrantRow, SecurableRow

# Privileges whose checks are data access, audited whether allowed or denied.
DATA_PRIVILEGES = frozenset(
    {
        Privilege.SELECT,
        Privilege.MODIFY,
        Privilege.EXECUTE,
        Privilege.READ_VOLUME,
        Privilege.WRITE_VOLUME,
        Privilege.CAN_QUERY,
    }
)

DecisionHook = Callable[[Caller, Privilege, SecurableType, str, bool], None]


@dataclass(frozen=True)
class Node:
    id: int
    type: SecurableType
    full_name: str
    parent_id: int | None
    owner_id: int


@dataclass
class GovernanceSnapshot:
    generation: int
    nodes: dict[int, Node]
    by_name: dict[tuple[SecurableType, str], Node]
    grants: dict[int, dict[int, frozenset[Privilege]]]
    children: dict[int, list[int]]


class Authorizer:
    def __init__(self, metastore: Metastore, on_decision: DecisionHook | None = None) -> None:
        self._metastore = metastore
        self._lock = threading.Lock()
        self._snapshot: GovernanceSnapshot | None = None
        self.on_decision = on_decision

    # -- snapshot -----------------------------------------------------------------------------

    def snapshot(self) -> GovernanceSnapshot:
        snap = self._snapshot
        if snap is not None and snap.generation == self._metastore.generation:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is None or snap.generation != self._metastore.generation:
                snap = self._load()
                self._snapshot = snap
            return snap

    def _load(self) -> GovernanceSnapshot:
        generation = self._metastore.generation
        nodes: dict[int, Node] = {}
        grants: dict[int, dict[int, set[Privilege]]] = {}
        children: dict[int, list[int]] = {}
        with self._metastore.session() as session:
            for row in session.scalars(select(SecurableRow)):
                node = Node(
                    row.id, SecurableType(row.type), row.full_name, row.parent_id, row.owner_id
                )
                nodes[row.id] = node
                if row.parent_id is not None:
                    children.setdefault(row.parent_id, []).append(row.id)
            for grant in session.scalars(select(GrantRow)):
                grants.setdefault(grant.securable_id, {}).setdefault(grant.principal_id, set()).add(
                    Privilege(grant.privilege)
                )
        return GovernanceSnapshot(
            generation=generation,
            nodes=nodes,
            by_name={(n.type, n.full_name): n for n in nodes.values()},
            grants={
                sid: {pid: frozenset(expand(p)) for pid, p in by_principal.items()}
                for sid, by_principal in grants.items()
            },
            children=children,
        )

    # -- look-ups -----------------------------------------------------------------------------

    def node(self, securable_type: SecurableType, full_name: str) -> Node:
        node = self.snapshot().by_name.get((securable_type, full_name))
        if node is None:
            raise NotFound(f"{securable_type.label.capitalize()} '{full_name}' does not exist.")
        return node

    def _lineage(self, snap: GovernanceSnapshot, node: Node) -> Iterator[Node]:
        current: Node | None = node
        while current is not None:
            yield current
            current = snap.nodes.get(current.parent_id) if current.parent_id else None

    def owns(self, caller: Caller, node: Node) -> bool:
        """Owner of the object or of a container above it (directly or through a group)."""
        ids = caller.principal_ids
        return any(n.owner_id in ids for n in self._lineage(self.snapshot(), node))

    def effective(self, caller: Caller, node: Node) -> set[Privilege]:
        """Privileges the caller holds on ``node``, granted there or inherited from above."""
        snap = self.snapshot()
        if caller.is_admin or self.owns(caller, node):
            return set(APPLICABLE[node.type]) | {Privilege.MANAGE}
        held: set[Privilege] = set()
        ids = caller.principal_ids
        for ancestor in self._lineage(snap, node):
            for principal_id, privileges in snap.grants.get(ancestor.id, {}).items():
                if principal_id in ids:
                    held |= privileges
        return held

    def has(self, caller: Caller, privilege: Privilege, node: Node) -> bool:
        return privilege in self.effective(caller, node)

    def visible(self, caller: Caller, node: Node) -> bool:
        """Whether the caller may see that the object exists.

        Catalogs and schemas: any privilege on them or on something below. Other objects: a
        privilege that applies to the object itself (granted there or inherited) — ``USE
        SCHEMA`` alone does not reveal a schema's tables, as in ``SHOW TABLES``.
        """
        if caller.is_admin:
            return True
        held = self.effective(caller, node)
        if node.type not in (SecurableType.CATALOG, SecurableType.SCHEMA):
            return bool(held & APPLICABLE[node.type])
        if held:
            return True
        snap = self.snapshot()
        ids = caller.principal_ids
        stack = list(snap.children.get(node.id, ()))
        while stack:
            child = snap.nodes[stack.pop()]
            if child.owner_id in ids or any(p in ids for p in snap.grants.get(child.id, {})):
                return True
            stack.extend(snap.children.get(child.id, ()))
        return False

    # -- decisions ----------------------------------------------------------------------------

    def require(
        self, caller: Caller, privilege: Privilege, securable_type: SecurableType, full_name: str
    ) -> Node:
        """Raise unless the caller may exercise ``privilege`` on the object, USE rights included.

        >>> authorizer.require(caller, Privilege.SELECT, SecurableType.TABLE, "main.default.t")
        """
        node = self.node(securable_type, full_name)
        allowed, missing = self._decide(caller, privilege, node)
        if self.on_decision is not None and privilege in DATA_PRIVILEGES:
            self.on_decision(caller, privilege, securable_type, full_name, allowed)
        if not allowed:
            assert missing is not None
            raise PermissionDenied(
                f"User {caller.name} does not have {missing[0].sql} on "
                f"{missing[1].type.label} '{missing[1].full_name}'."
            )
        return node

    def _decide(
        self, caller: Caller, privilege: Privilege, node: Node
    ) -> tuple[bool, tuple[Privilege, Node] | None]:
        if caller.is_admin:
            return True, None
        snap = self.snapshot()
        lineage = list(self._lineage(snap, node))
        # USE rights on the containers above the object (or on the object, when the
        # privilege asked for is itself a USE right).
        for ancestor in reversed(lineage):  # outermost first: catalog, then schema
            if ancestor is node and privilege in (Privilege.USE_CATALOG, Privilege.USE_SCHEMA):
                continue
            needed = {
                SecurableType.CATALOG: Privilege.USE_CATALOG,
                SecurableType.SCHEMA: Privilege.USE_SCHEMA,
            }.get(ancestor.type)
            if needed is not None and needed not in self.effective(caller, ancestor):
                return False, (needed, ancestor)
        if privilege not in self.effective(caller, node):
            return False, (privilege, node)
        return True, None

    def sees_grantee(self, caller: Caller, node: Node, grantee: str) -> bool:
        """Whether a listing of ``node``'s grants may show those made to ``grantee``.

        Databricks' ``SHOW GRANTS`` rule, used by every listing (the permissions REST APIs,
        ``SHOW GRANTS``, ``information_schema.table_privileges``, endpoint ACLs): admins,
        owners and those who may manage the object's grants see every grantee; anyone else
        sees only the grants made to themselves and to the groups they belong to.
        """
        return (
            grantee == caller.name
            or grantee in caller.groups
            or self.can_manage_grants(caller, node)
        )

    def can_manage_grants(self, caller: Caller, node: Node) -> bool:
        """Admins, owners of the object or its containers, and holders of ``MANAGE``."""
        if node.type in (SecurableType.SERVING_ENDPOINT, SecurableType.APP):
            return Privilege.CAN_MANAGE in self.effective(caller, node)
        return Privilege.MANAGE in self.effective(caller, node)
