"""The REST API fuzzed from its OpenAPI document (Schemathesis), as an admin and as an
ordinary user, against a real server: no 5xx, no unhandled error. CI runs the small size;
``python scripts/fuzz_api.py`` runs the large one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_api.py"


@pytest.mark.slow
def test_fuzzing_the_rest_api_finds_no_server_error() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "small"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-8000:]
    assert "unhandled server errors logged: 0" in done.stdout
    rows = [
        line.split() for line in done.stdout.splitlines() if line.startswith(("admin", "ordinary"))
    ]
    assert len(rows) == 2 and all(int(row[-3]) > 0 and int(row[-2]) == 0 for row in rows), (
        done.stdout
    )
