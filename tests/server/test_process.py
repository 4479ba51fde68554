"""``python -m bastion.server.process``, the entry point of each ``--workers N`` process."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_entry_point_loads_nothing_of_the_server() -> None:
    """A process spawned by a server process (the writer's commit helper) imports the
    server's main module again; it must not load the server for that."""
    check = (
        "import sys, bastion.server.process; "
        "loaded = [m for m in ('bastion.server.run', 'bastion.server.app', 'fastapi') "
        "if m in sys.modules]; "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
