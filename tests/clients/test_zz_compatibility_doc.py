"""docs/clients.md's compatibility table is what this run of the real clients showed.

Runs last in tests/clients (file order). It writes the run's results to
``build/clients-compat.json`` and compares the table rendered from them with the doc; when
not every client test ran (a subset was selected, or a client could not be installed) there
is nothing complete to compare, and it skips.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from clients.conftest import RESULTS, RESULTS_KEY, ROOT


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "clients_table", ROOT / "scripts" / "clients_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_doc_shows_what_the_clients_did(request: pytest.FixtureRequest) -> None:
    here = Path(__file__).parent
    expected = {p.name for p in here.glob("test_*.py")} - {Path(__file__).name}
    ran = {item.path.name for item in request.session.items if item.path.parent == here}
    compat_items = [i for i in request.session.items if i.get_closest_marker("compat") is not None]
    results = request.config.stash[RESULTS_KEY]
    if not expected <= ran or len(results) != len(compat_items):
        pytest.skip("not every client test ran in this session")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    if any(r["result"] == "skipped" for r in results):
        pytest.skip("a client test was skipped; the table cannot be checked")
    script = _script()
    doc = script.DOC.read_text()
    assert script.replace_table(doc, script.render(results)) == doc, (
        "docs/clients.md differs from this run's results: run `python scripts/clients_table.py`"
    )
