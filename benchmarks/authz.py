"""Cost of a cached authorization check and of token validation, beside direct baselines.

Run: ``python benchmarks/authz.py`` (or ``make bench``). Targets: an authorization check under
20 µs and token validation under 50 µs. Baselines in the same run: the bare SHA-256 and dict
look-up a PAT check cannot avoid, a bare JWT decode with PyJWT, and the same authorization
answered by querying the metastore (what the cache avoids).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jwt
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bastion.bootstrap import initialize
from bastion.governance.privileges import Privilege
from bastion.governance.securables import SecurableType
from bastion.governance.store import GrantChange
from bastion.identity.credentials import PAT_PREFIX, hash_token
from bastion.identity.model import PrincipalKind
from bastion.metastore.models import GrantRow, SecurableRow
from bastion.platform import Platform
from bastion.settings import Settings


def per_call_us(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Median over ``repeats`` runs of the mean cost of one call, in microseconds."""
    for _ in range(min(n, 1000)):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20_000, help="calls per measurement")
    parser.add_argument("--tables", type=int, default=2_000, help="tables in the metastore")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
    platform = Platform(Settings(home=home, cache_poll_interval_s=0))
    initialize(platform)
    platform.authorizer.on_decision = None
    gov, ident = platform.governance, platform.identity
    user = ident.create_principal(PrincipalKind.USER, "bench@example.com")
    group = ident.create_principal(PrincipalKind.GROUP, "analysts")
    ident.set_members(group.id, add=[user.id])
    admin = ident.find("admin")
    assert admin is not None
    gov.create(SecurableType.CATALOG, "bench", owner_id=admin.id, created_by="admin")
    gov.create(SecurableType.SCHEMA, "bench.s", owner_id=admin.id, created_by="admin")
    for i in range(args.tables):
        gov.create(SecurableType.TABLE, f"bench.s.t{i}", owner_id=admin.id, created_by="admin")
    catalog = gov.get(SecurableType.CATALOG, "bench")
    schema = gov.get(SecurableType.SCHEMA, "bench.s")
    gov.update_grants(catalog.id, [GrantChange(group.id, add=(Privilege.USE_CATALOG,))])
    gov.update_grants(schema.id, [GrantChange(group.id, add=(Privilege.USE_SCHEMA,))])
    gov.update_grants(catalog.id, [GrantChange(user.id, add=(Privilege.SELECT,))])
    pat, _ = ident.create_token(user.id, kind="pat", prefix=PAT_PREFIX, lifetime_s=3600)
    access, _ = platform.codec.issue(user.id, None, 3600)

    authn, authz = platform.authenticator, platform.authorizer
    caller = authn.authenticate(pat)
    name = f"bench.s.t{args.tables // 2}"
    authz.require(caller, Privilege.SELECT, SecurableType.TABLE, name)  # warm the snapshot
    pats = {hash_token(pat): (user.id,)}
    key = platform.codec._key  # the same key the server signs with

    def uncached_check() -> bool:
        """Answer the same question with SQL: the table, its parents and their grants."""
        with platform.metastore.session() as session:
            rows = session.execute(
                select(SecurableRow.id, SecurableRow.parent_id).where(
                    SecurableRow.type == "table", SecurableRow.full_name == name
                )
            ).all()
            ids = {rows[0][0], rows[0][1], schema.id, catalog.id}
            grants = session.scalars(
                select(GrantRow.privilege).where(
                    GrantRow.securable_id.in_(ids),
                    GrantRow.principal_id.in_([user.id, group.id]),
                )
            ).all()
            return "SELECT" in grants

    rows = [
        (
            "authorization: require(SELECT) on a table, cached",
            lambda: authz.require(caller, Privilege.SELECT, SecurableType.TABLE, name),
            20.0,
        ),
        ("  baseline: same answer by metastore query", uncached_check, None),
        ("token validation: PAT", lambda: authn.authenticate(pat), 50.0),
        ("  baseline: sha256 + dict look-up", lambda: pats.get(hash_token(pat)), None),
        ("token validation: OAuth JWT, seen before", lambda: authn.authenticate(access), 50.0),
        ("token validation: OAuth JWT, first sight", lambda: platform.codec._verify(access), None),
        (
            "  baseline: jwt.decode alone",
            lambda: jwt.decode(access, key, algorithms=["HS256"], options={"verify_exp": False}),
            None,
        ),
    ]
    table = Table(title=f"Authorization and token validation ({args.tables} tables, n={args.n})")
    table.add_column("operation")
    table.add_column("µs / call", justify="right")
    table.add_column("target", justify="right")
    table.add_column("met", justify="center")
    for label, fn, target in rows:
        n = args.n if "metastore" not in label else max(args.n // 20, 200)
        cost = per_call_us(fn, n)
        met = "" if target is None else ("yes" if cost < target else "NO")
        table.add_row(label, f"{cost:.2f}", f"< {target:.0f}" if target else "", met)
    Console().print(table)
    platform.close()


if __name__ == "__main__":
    main()
