"""The built-in operations dashboard: a Streamlit app that Bastion runs as the app
``dashboard`` behind its proxy. It reads only through the HTTP APIs (``bastion.sql``, the REST
API) with the viewer's forwarded token, so what each person sees is decided by their grants.

Importing this package imports nothing heavy: Streamlit is imported only by the app process
(``APP_DIR / "app.py"``).
"""

from __future__ import annotations

from pathlib import Path

#: The folder deployed as the app (it holds ``app.yaml`` and the Streamlit entry point).
APP_DIR = Path(__file__).resolve().parent / "app"
NAME = "dashboard"
USABLE_BY = "users"
#: What the dashboard's forwarded tokens may do: SQL, reading endpoints, scans and the audit
#: API. Nothing else — not tokens, not grants.
USER_API_SCOPES = [
    "sql",
    "serving.serving-endpoints",
    "redteam",
    "catalog.tables:read",
    "catalog.models:read",
]
