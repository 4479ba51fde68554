"""Supervised children die with their supervisor, however it dies, and a restarted server
stops what a crashed one left — never a process that is not its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from bastion.processes import ProcessRegistry
from bastion.processes.proc import group_members, start_ticks

SUPERVISOR = textwrap.dedent(
    """
    import sys, time, threading
    from pathlib import Path
    from bastion.processes import Lifeline, ProcessRegistry, spawn

    registry = ProcessRegistry(Path(sys.argv[1]))
    lifeline = Lifeline()
    # started from a short-lived thread, as request threads do: must not matter
    def start():
        child = spawn(["sh", "-c", "sleep 600 & sleep 600"], kind="test", key="k",
                      lifeline=lifeline, registry=registry)
        print(child.pid, flush=True)
    t = threading.Thread(target=start); t.start(); t.join()
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    return start_ticks(pid) is not None and _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _wait_gone(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _start_supervisor(run_dir: Path) -> tuple[subprocess.Popen[str], int]:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert supervisor.stdout is not None
    guard = int(supervisor.stdout.readline())
    deadline = time.monotonic() + 10
    while len(group_members(guard)) < 3 and time.monotonic() < deadline:  # guard, sh, sleeps
        time.sleep(0.05)
    return supervisor, guard


def test_sigkill_of_the_supervisor_takes_the_whole_group_down(tmp_path: Path) -> None:
    supervisor, guard = _start_supervisor(tmp_path / "run")
    members = group_members(guard)
    assert guard in members and len(members) >= 3  # guard, the shell, two sleeps
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait()
    assert _wait_gone(members) == []


def test_a_restarted_server_reaps_its_predecessors_children(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    supervisor, guard = _start_supervisor(run_dir)
    members = group_members(guard)
    # Simulate a supervisor that died without its children noticing: the children are
    # detached from the lifeline by stopping (not killing) them, then the supervisor is
    # killed; the record remains.
    for pid in members:
        os.kill(pid, signal.SIGSTOP)
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait()
    try:
        assert [p for p in members if _alive(p)] == members  # frozen, still there
        registry = ProcessRegistry(run_dir)
        stopped = registry.reap_orphans(grace_s=1.0)
        assert [r.pid for r in stopped] == [guard]
        assert _wait_gone(members) == []
        assert registry.records() == []
    finally:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_reused_pid_is_never_killed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    supervisor, guard = _start_supervisor(run_dir)
    registry = ProcessRegistry(run_dir)
    (record,) = registry.records()
    os.kill(supervisor.pid, signal.SIGKILL)
    supervisor.wait()
    assert _wait_gone(group_members(guard)) == []
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        # The record now names the bystander's pid (as if the kernel had reused it).
        forged = record.__class__(**{**record.__dict__, "pid": bystander.pid})
        registry.record(forged)
        assert registry.reap_orphans(grace_s=0.5) == []
        assert bystander.poll() is None  # untouched: its start time and command differ
        assert registry.records() == []  # the stale record is gone
    finally:
        bystander.kill()
        bystander.wait()


def test_a_live_servers_children_are_left_alone(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    supervisor, guard = _start_supervisor(run_dir)
    try:
        assert ProcessRegistry(run_dir).reap_orphans(grace_s=0.5) == []
        assert _alive(guard)
    finally:
        members = group_members(guard)
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
        assert _wait_gone(members) == []


def test_killing_the_guard_itself_takes_its_child_down(tmp_path: Path) -> None:
    supervisor, guard = _start_supervisor(tmp_path / "run")
    try:
        members = group_members(guard)
        os.kill(guard, signal.SIGKILL)
        shell = [p for p in members if p != guard]
        # The guard's direct child dies with it (the parent-death signal); the supervisor,
        # still alive, would restart the worker: nothing may keep the old one's port.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
            _alive(p) and _state(p) != "Z" for p in shell[:1]
        ):
            time.sleep(0.05)
        assert not _alive(min(shell))
    finally:
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
