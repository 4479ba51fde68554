"""Plan, deploy and destroy: the bundle against the server and its deployment state.

Deploys run under the target's lock, in dependency order; the state is saved after every
step, so a failure leaves a consistent record of what was applied and a re-run finishes the
job. A resource the bundle did not create is never updated or destroyed by it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bastion.bundles.load import ResolvedBundle
from bastion.bundles.resources import BY_KIND, HANDLERS, Action, Context, Op
from bastion.errors import BastionError, Conflict, NotFound, PermissionDenied

if TYPE_CHECKING:
    from bastion.client.http import BastionClient

LOCK_TTL_S = 3600


@dataclass
class Plan:
    actions: list[Action]
    state: dict[str, Any]
    version: int
    #: Resources that exist on the server but that this bundle did not create.
    foreign: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.actions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "actions": [
                {"resource": a.address, "action": a.op, "name": a.name, "changes": a.changes}
                for a in self.actions
            ],
            "unmanaged_conflicts": self.foreign,
        }


def _path(bundle: ResolvedBundle) -> str:
    return (
        f"/api/2.0/bastion/bundles/{quote(bundle.name, safe='')}"
        f"/deployments/{quote(bundle.state_key, safe='')}"
    )


def read_state(client: BastionClient, bundle: ResolvedBundle) -> tuple[dict[str, Any], int]:
    try:
        found = client.request("GET", _path(bundle))
    except NotFound:
        return {"resources": {}}, 0
    return dict(found["state"]), int(found["version"])


def plan(client: BastionClient, bundle: ResolvedBundle, *, context: Context | None = None) -> Plan:
    """What a deploy would do now: creates, updates (with the changed facets), deletes."""
    state, version = read_state(client, bundle)
    ctx = context or Context(client, bundle.root, bundle.user_name, managers=bundle.managers)
    entries: dict[str, dict[str, Any]] = state.get("resources") or {}
    for address, recorded in entries.items():  # the bundle's version numbers, as deployed
        if address.startswith("registered_models.") and recorded.get("versions"):
            ctx.versions[recorded["name"]] = {
                i + 1: v["version"] for i, v in enumerate(recorded["versions"])
            }
    actions: list[Action] = []
    foreign: list[str] = []
    wanted: set[str] = set()
    for handler in HANDLERS:
        for key, resource in getattr(bundle.resources, handler.kind).items():
            address = f"{handler.kind}.{key}"
            wanted.add(address)
            name = handler.name(resource)
            entry: dict[str, Any] | None = entries.get(address)
            if entry is not None and entry.get("name") != name:  # renamed: replace
                actions.append(Action(handler.kind, key, "delete", entry["name"]))
                entry = None
            try:
                current = handler.read(ctx, name)
            except PermissionDenied:  # it exists, and this deployer may not even see it
                foreign.append(f"{address} ({name}, which you may not see)")
                continue
            facets = handler.facets(ctx, resource)
            if current is None:
                op: Op = "run" if handler.kind == "redteam_scans" else "create"
                if handler.kind == "redteam_scans" and entry is not None:
                    changed = _changed(facets, entry)
                    if changed:
                        actions.append(Action(handler.kind, key, "run", name, changed))
                    continue
                actions.append(Action(handler.kind, key, op, name, sorted(facets)))
                continue
            if entry is None and handler.kind != "grants":
                foreign.append(f"{address} ({name})")
                continue
            changed = _changed(facets, entry or {})
            changed += [f for f in handler.drifted(ctx, resource, current) if f not in changed]
            if changed:
                actions.append(Action(handler.kind, key, "update", name, sorted(changed)))
    order = {h.kind: h.order for h in HANDLERS}
    deletes = [
        Action(entry["type"], address.split(".", 1)[1], "delete", entry["name"])
        for address, entry in entries.items()
        if address not in wanted and not entry.get("prevent_destroy")
    ]
    deletes.sort(key=lambda a: -order.get(a.kind, 0))
    return Plan(deletes + actions, state, version, foreign)


def _changed(facets: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    old = entry.get("facets") or {}
    return sorted(f for f, value in facets.items() if old.get(f) != value)


@contextmanager
def locked(client: BastionClient, bundle: ResolvedBundle) -> Iterator[str]:
    holder = uuid.uuid4().hex
    client.request("POST", _path(bundle) + "/lock", json={"holder": holder, "ttl_s": LOCK_TTL_S})
    try:
        yield holder
    finally:
        with contextlib.suppress(BastionError):  # else it expires by itself
            client.request("DELETE", _path(bundle) + "/lock", params={"holder": holder})


@dataclass
class Outcome:
    applied: list[Action]
    failed: Action | None = None
    error: str | None = None
    skipped: list[Action] = field(default_factory=list)


def deploy(
    client: BastionClient,
    bundle: ResolvedBundle,
    *,
    say: Callable[[str], None] = lambda _t: None,
    step: Callable[[Action], None] = lambda _a: None,
) -> tuple[Plan, Outcome]:
    """Apply the plan under the lock; the state is saved after every step."""
    with locked(client, bundle) as holder:
        ctx = Context(client, bundle.root, bundle.user_name, say=say, managers=bundle.managers)
        current = plan(client, bundle, context=ctx)
        if current.foreign:
            raise Conflict(
                "These already exist and were not created by this bundle (rename them in the "
                "bundle, or delete them first): " + ", ".join(current.foreign)
            )
        state = dict(current.state)
        state.setdefault("resources", {})
        version = current.version
        outcome = Outcome(applied=[])
        resources = bundle.resources
        for index, action in enumerate(current.actions):
            handler = BY_KIND[action.kind]
            address = action.address
            entry = dict(state["resources"].get(address) or {})
            step(action)
            try:
                if action.op == "delete":
                    handler.delete(ctx, entry or {"name": action.name})
                    state["resources"].pop(address, None)
                else:
                    resource = getattr(resources, action.kind)[action.key]
                    entry.update(type=action.kind, name=action.name)
                    entry.setdefault("created", action.op in ("create", "run"))
                    if action.op == "create":
                        handler.create(ctx, resource, entry)
                    else:
                        handler.update(ctx, resource, action.changes, entry)
                    entry["facets"] = handler.facets(ctx, resource)
                    entry["prevent_destroy"] = resource.lifecycle.prevent_destroy
                    state["resources"][address] = entry
            except BastionError as exc:
                outcome.failed, outcome.error = action, exc.message
                outcome.skipped = current.actions[index + 1 :]
                if action.op in ("create", "update") and _exists(handler, ctx, action.name):
                    # Half done (created, not fully configured): ours, and planned again.
                    entry.pop("facets", None)
                    state["resources"][address] = {
                        **entry,
                        "type": action.kind,
                        "name": action.name,
                    }
                version = _save(client, bundle, holder, version, state)
                return current, outcome
            outcome.applied.append(action)
            version = _save(client, bundle, holder, version, state)
        if not current.actions and current.version == 0:
            _save(client, bundle, holder, version, state)
        return current, outcome


def _exists(handler: Any, ctx: Context, name: str) -> bool:
    try:
        return handler.read(ctx, name) is not None
    except BastionError:
        return False


def _save(
    client: BastionClient, bundle: ResolvedBundle, holder: str, version: int, state: dict[str, Any]
) -> int:
    state["deployed_by"] = bundle.user_name
    state["managers"] = bundle.managers  # who else may deploy this target
    saved = client.request(
        "PUT",
        _path(bundle) + "/state",
        json={"holder": holder, "version": version, "state": state},
    )
    return int(saved["version"])


def destroy(
    client: BastionClient,
    bundle: ResolvedBundle,
    *,
    say: Callable[[str], None] = lambda _t: None,
    step: Callable[[Action], None] = lambda _a: None,
) -> Outcome:
    """Delete what the bundle created (newest layers first), except ``prevent_destroy``."""
    with locked(client, bundle) as holder:
        state, version = read_state(client, bundle)
        entries = state.get("resources") or {}
        protected = [a for a, e in entries.items() if e.get("prevent_destroy")]
        if protected:
            raise Conflict(
                "lifecycle.prevent_destroy protects: "
                + ", ".join(protected)
                + "; remove the setting (and deploy) before destroying."
            )
        ctx = Context(client, bundle.root, bundle.user_name, say=say)
        order = {h.kind: h.order for h in HANDLERS}
        actions = sorted(
            (
                Action(e["type"], a.split(".", 1)[1], "delete", e["name"])
                for a, e in entries.items()
                if e.get("created", True)
            ),
            key=lambda a: -order.get(a.kind, 0),
        )
        outcome = Outcome(applied=[])
        for index, action in enumerate(actions):
            step(action)
            try:
                BY_KIND[action.kind].delete(ctx, entries[action.address])
            except NotFound:
                pass  # already gone
            except BastionError as exc:
                outcome.failed, outcome.error = action, exc.message
                outcome.skipped = actions[index + 1 :]
                version = _save(client, bundle, holder, version, state)
                return outcome
            entries.pop(action.address, None)
            outcome.applied.append(action)
            version = _save(client, bundle, holder, version, state)
        client.request("DELETE", _path(bundle), params={"holder": holder})
        return outcome
