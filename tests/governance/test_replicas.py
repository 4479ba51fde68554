"""Two server replicas on one metastore: a grant changed through one reaches the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import PermissionDenied
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GrantChange
from bastion.identity.model import PrincipalKind
from bastion.platform import Platform
from conftest import make_settings, wait_until


def _replica_caching_a_user(platform: Platform, home: Path, email: str):  # type: ignore[no-untyped-def]
    """A second replica on ``platform``'s metastore that has cached a new user (no grant on
    ``main.default``) and the catalog: (replica, user, caller, schema)."""
    other = Platform(make_settings(home, platform.settings.resolved_database_url))
    user = platform.identity.create_principal(PrincipalKind.USER, email)
    other.metastore.poll_once()
    caller = other.identity_cache.caller(user.id)
    schema = other.authorizer.node(SecurableType.SCHEMA, "main.default")
    assert not other.authorizer.has(caller, Privilege.SELECT, schema)
    return other, user, caller, schema


def test_other_replica_sees_grant_changes_after_polling(tmp_path: Path, platform: Platform) -> None:
    other, user, caller, schema = _replica_caching_a_user(
        platform, tmp_path / "home2", "zoe@example.com"
    )
    try:
        platform.governance.update_grants(
            schema.id, [GrantChange(user.id, add=(Privilege.SELECT,))]
        )
        # Until the replica polls, it serves from its cache (no query per check) ...
        assert not other.authorizer.has(caller, Privilege.SELECT, schema)
        other.metastore.poll_once()
        assert other.authorizer.has(caller, Privilege.SELECT, schema)

        platform.governance.update_grants(
            schema.id, [GrantChange(user.id, remove=(Privilege.SELECT,))]
        )
        other.metastore.poll_once()
        with pytest.raises(PermissionDenied):
            other.authorizer.require(caller, Privilege.SELECT, SecurableType.SCHEMA, "main.default")
    finally:
        other.close()


def test_a_replica_that_cached_while_starting_sees_changes_made_before_it_polled(
    tmp_path: Path, platform: Platform
) -> None:
    """A starting replica caches (routing, catalog, identities) before its poller runs; a
    change another replica commits in between must still reach it. Seen with two server
    processes: one kept answering 404 for an endpoint the other had just created."""
    other, user, caller, schema = _replica_caching_a_user(
        platform, tmp_path / "home2", "yan@example.com"
    )
    try:
        platform.governance.update_grants(
            schema.id, [GrantChange(user.id, add=(Privilege.SELECT,))]
        )
        other.metastore.start_polling(0.05)
        wait_until(lambda: other.authorizer.has(caller, Privilege.SELECT, schema), "the grant")
    finally:
        other.close()
