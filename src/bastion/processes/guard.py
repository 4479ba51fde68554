"""The guard: ``python -m bastion.processes.guard --lifeline FD --tag TAG -- COMMAND...``.

Runs COMMAND in its own process group (which the guard leads) and stops the whole group —
COMMAND and anything it started — when the server's lifeline pipe closes (the server is gone,
however it died), when the guard is told to stop (SIGTERM/SIGINT), or when COMMAND exits.
Exits with COMMAND's exit code. Kept to the standard library: it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the guard dies (Linux only; else nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def _watch_lifeline(fd: int, stop: threading.Event) -> None:
    try:
        while os.read(fd, 1):  # nobody writes: returns b"" only when the server is gone
            pass
    except OSError:
        pass
    stop.set()


def _stop_group(child: subprocess.Popen[bytes], grace_s: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the guard outlives its own signal
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.killpg(os.getpgrp(), signal.SIGKILL)  # the last act: stragglers, and the guard


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lifeline", type=int, required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command is required after --")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    threading.Thread(target=_watch_lifeline, args=(args.lifeline, stop), daemon=True).start()
    # The child also dies if the guard itself is killed outright (SIGKILL leaves it no time
    # to stop the group): Linux's parent-death signal, safe here because the guard's main
    # thread, which starts the child, lives exactly as long as the guard.
    child = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, close_fds=True, preexec_fn=_die_with_parent
    )
    while not stop.is_set():
        if child.poll() is not None:
            break
        stop.wait(0.2)
    code = child.poll()
    if code is None or _others_in_group(child.pid):
        _stop_group(child, args.grace)
    return code if code is not None else 1


def _others_in_group(child_pid: int) -> bool:
    """Whether something besides the guard (and the finished child) is left in the group."""
    me, group = os.getpid(), os.getpgrp()
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit() and int(entry) not in (me, child_pid):
            try:
                if os.getpgid(int(entry)) == group:
                    return True
            except OSError:
                continue
    return False


if __name__ == "__main__":
    sys.exit(main())
