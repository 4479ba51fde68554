"""The pieces that let processes share a deployment: the leader lease, write-ahead log slots,
cache invalidation over Redis, the leader's model workers mirrored by the others, and what
``/metrics`` says about them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from bastion.bootstrap import initialize
from bastion.errors import Conflict
from bastion.identity.model import PrincipalKind
from bastion.metastore.lease import LeaderElection, Lease
from bastion.platform import Platform
from bastion.serving.workers import WorkerSpec, WorkerState
from bastion.serving.workers.shared import SharedWorkerSupervisor
from bastion.tables.slots import drain_orphans, open_slot, pending_tables, slot_path
from bastion.tables.writer import DurableWriter, TableSpec
from conftest import RunningServer, ServerThread, make_settings, wait_until
from services import RedisServer

STUB = str(Path(__file__).resolve().parent.parent / "upstream_stub.py")


# --- the leader lease --------------------------------------------------------------------------


def test_one_leader_at_a_time_and_a_successor_when_it_goes(database_url: str) -> None:
    events: list[str] = []
    first = LeaderElection(
        Lease(database_url),
        on_elected=lambda: events.append("first leads"),
        on_deposed=lambda: events.append("first steps down"),
    )
    second = LeaderElection(
        Lease(database_url),
        on_elected=lambda: events.append("second leads"),
        on_deposed=lambda: events.append("second steps down"),
    )
    try:
        assert first.step() is True
        assert second.step() is False and second.step() is False
        assert first.step() is True  # still held: nothing happens
        first.close()  # the leader goes (as a dead process's session would)
        assert second.step() is True
        assert events == ["first leads", "first steps down", "second leads"]
    finally:
        first.close()
        second.close()


# --- write-ahead log slots ---------------------------------------------------------------------


SPEC_SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])


def test_each_process_claims_the_lowest_free_slot_and_orphans_are_replayed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "wal"
    spec = TableSpec("t", str(tmp_path / "t"), SPEC_SCHEMA, key="id")
    a, slot_a = open_slot(root)
    b, slot_b = open_slot(root)
    assert (slot_a, slot_b) == (0, 1) and b.wal_dir == slot_path(root, 1)
    writer_ids = {a.writer_id, b.writer_id}
    for writer, prefix in ((a, "a"), (b, "b")):
        writer.register(spec)
        writer.append_many("t", [{"id": f"{prefix}{i}", "n": i} for i in range(100)])
    b._closed = True  # "killed": its rows stay in the log, its lock goes with it
    b._stop.set()
    os.close(b._lock_fd)
    assert pending_tables(slot_path(root, 1)) == ["t"]
    again, slot = open_slot(root)  # a restarted process gets slot 1 back, with its writer id
    assert slot == 1 and again.writer_id in writer_ids
    again.close()  # (it replays when a table is registered; here the leader will)

    assert drain_orphans(root, own=a.wal_dir, resolve=lambda n: spec if n == "t" else None) == 100
    assert drain_orphans(root, own=a.wal_dir, resolve=lambda n: spec) == 0  # exactly once
    a.close()
    ids = DeltaTable(str(tmp_path / "t")).to_pyarrow_table().column("id").to_pylist()
    assert sorted(ids) == sorted([f"a{i}" for i in range(100)] + [f"b{i}" for i in range(100)])


def test_a_held_slot_is_never_drained(tmp_path: Path) -> None:
    root = tmp_path / "wal"
    spec = TableSpec("t", str(tmp_path / "t"), SPEC_SCHEMA, key="id")
    a, _ = open_slot(root)
    b, _ = open_slot(root)
    b.register(spec)
    b.append("t", {"id": "x", "n": 1})
    assert drain_orphans(root, own=a.wal_dir, resolve=lambda n: spec) == 0
    with pytest.raises(Conflict):
        DurableWriter(b.wal_dir)
    b.close()
    a.close()


# --- cache invalidation over Redis -------------------------------------------------------------


def test_a_change_reaches_the_other_replica_through_redis_not_polling(
    tmp_path: Path, redis_url: str
) -> None:
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = dict(redis_url=redis_url, cache_poll_interval_s=0)  # polling off
    one = Platform(make_settings(tmp_path / "one", database, **settings))
    two = Platform(make_settings(tmp_path / "two", database, **settings))
    try:
        initialize(one)
        one.start()
        two.start()
        assert one.invalidator is not None and two.invalidator is not None
        wait_until(
            lambda: one.invalidator.subscribed and two.invalidator.subscribed, "subscriptions"
        )
        before = two.metastore.generation
        user = one.identity.create_principal(PrincipalKind.USER, "zed@example.com")
        wait_until(lambda: two.metastore.generation > before, "the invalidation")
        assert two.identity_cache.snapshot().principals[user.id].name == "zed@example.com"
        assert two.invalidator.received >= 1 and one.invalidator.published >= 1
        assert one.invalidator.received == 0  # its own messages are not applied twice
        assert "test-redis-secret" not in repr(one.settings)
    finally:
        two.close()
        one.close()


def test_a_change_made_before_a_replica_subscribed_still_reaches_its_caches(
    tmp_path: Path, redis_url: str
) -> None:
    """Polling off: a replica that cached while starting, then subscribed after another
    replica's change was announced, rebuilds once it has subscribed (it cannot have heard)."""
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = dict(redis_url=redis_url, cache_poll_interval_s=0)
    one = Platform(make_settings(tmp_path / "one", database, **settings))
    two = Platform(make_settings(tmp_path / "two", database, **settings))
    try:
        initialize(one)
        one.start()
        assert one.invalidator is not None and two.invalidator is not None
        wait_until(lambda: one.invalidator.subscribed, "the first subscription")
        cached = two.identity_cache.snapshot().principals  # two caches while "starting"
        user = one.identity.create_principal(PrincipalKind.USER, "late@example.com")
        wait_until(lambda: one.invalidator.published >= 1, "the announcement")
        assert user.id not in cached
        two.start()
        wait_until(lambda: user.id in two.identity_cache.snapshot().principals, "the late replica")
    finally:
        two.close()
        one.close()


def test_a_change_made_while_redis_is_down_arrives_when_it_is_back(
    tmp_path: Path, redis_service: RedisServer
) -> None:
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = dict(redis_url=redis_service.url, cache_poll_interval_s=0)
    one = Platform(make_settings(tmp_path / "one", database, **settings))
    two = Platform(make_settings(tmp_path / "two", database, **settings))
    try:
        one.start()
        two.start()
        assert one.invalidator is not None and one.redis_health is not None
        wait_until(
            lambda: one.invalidator.subscribed and two.invalidator.subscribed, "subscriptions"
        )
        before = two.metastore.generation
        redis_service.pause()
        try:
            one.identity.create_principal(PrincipalKind.USER, "down@example.com")
            wait_until(lambda: one.redis_health.errors["invalidation_publish"] >= 1, "the failure")
            assert two.metastore.generation == before
        finally:
            redis_service.resume()
        wait_until(lambda: two.metastore.generation > before, "the late invalidation", 30)
        assert one.redis_health.fallbacks[("invalidation_publish", "polling")] >= 1
    finally:
        two.close()
        one.close()


# --- model workers: the leader runs them, the others mirror them -------------------------------


def test_followers_route_to_the_leaders_workers(tmp_path: Path) -> None:
    run_dir, logs = tmp_path / "run", tmp_path / "logs"
    spec = WorkerSpec(
        key="stub/1",
        command=(sys.executable, STUB, "--port", "{port}", "--reply", "mirrored"),
        upstream_model="stub",
    )
    leader = SharedWorkerSupervisor(logs, run_dir=run_dir, check_interval_s=0.1)
    follower = SharedWorkerSupervisor(logs, run_dir=run_dir, poll_s=0.05)
    follower.follow()
    try:
        leader.start()
        follower.start()
        waiting = follower.ensure(spec)  # nothing published yet: starting, and nothing started
        assert waiting.state is WorkerState.STARTING and waiting.pid is None
        worker = leader.ensure(spec)
        wait_until(lambda: worker.state is WorkerState.READY, "the worker", 60)
        wait_until(
            lambda: (follower.get("stub/1") or waiting).state is WorkerState.READY, "the mirror"
        )
        mirrored = follower.ensure(spec)
        assert mirrored.base_url == worker.base_url
        reply = httpx.post(
            f"{mirrored.base_url}/chat/completions",
            json={"model": "stub", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.json()["choices"][0]["message"]["content"] == "mirrored"
        assert [w.spec.key for w in follower.workers()] == ["stub/1"]
        generation = follower.generation
        leader.follow()  # the leader steps down: its workers stop
        assert worker.process is None
        wait_until(
            lambda: follower.generation > generation and not follower.workers(), "the update"
        )
    finally:
        follower.stop_all()
        leader.stop_all()


def test_metrics_show_leadership_slot_and_redis(platform: Platform) -> None:
    assert platform.writer.compact_min_files == 0  # no writer compacts unless it leads
    with ServerThread(platform) as url:
        server = RunningServer(url=url, platform=platform)
        with server.admin() as admin:
            text = admin.get("/metrics").text
        # the leader is the deployment's one compactor (two at once would duplicate rows)
        compact = platform.settings.writer_compact_min_files
        assert compact > 0 and platform.writer.compact_min_files == compact
    assert platform.writer.compact_min_files == 0  # stepped down when it stopped
    assert "bastion_leader 1.0" in text
    assert "bastion_wal_slot 0.0" in text
    assert "bastion_redis_up" not in text  # no Redis configured
