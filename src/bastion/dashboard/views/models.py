"""Models & endpoints: per endpoint its config, served versions and aliases, traffic split,
state, recent traffic and errors, and the latest scan's ASR — what the viewer may see."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from bastion.dashboard.analysis import number, scan_outcome
from bastion.dashboard.client import DashboardError, Viewer
from bastion.dashboard.queries import OpsQueries
from bastion.dashboard.state import ViewState
from bastion.dashboard.views.common import empty, panel, query
from bastion.dashboard.views.filters import filter_bar
from bastion.dashboard.views.links import link
from bastion.dashboard.views.ops import visible_tables


def render(viewer: Viewer, state: ViewState) -> ViewState:
    st.title("Models & endpoints")
    state = filter_bar(state, None, ops=False)
    endpoints: list[dict[str, Any]] = []
    panel(
        state,
        "Endpoints",
        [],
        lambda: endpoints.extend(
            viewer.api("GET", "/api/2.0/serving-endpoints").get("endpoints", [])
        ),
    )
    if not endpoints:
        empty("No serving endpoints you may view.")
        return state
    try:
        scans = viewer.api("GET", "/api/2.0/redteam/scans").get("scans", [])
    except DashboardError:
        scans = []
    try:
        tables = visible_tables(viewer)
    except DashboardError:
        tables = []
    for endpoint in endpoints:
        name = str(endpoint.get("name"))
        with st.container(border=True):
            state_info = endpoint.get("state") or {}
            st.markdown(
                f"### {name}  ·  `{state_info.get('ready', '?')}` / "
                f"`{state_info.get('config_update', '?')}`"
            )
            config = endpoint.get("config") or {}
            served = pd.DataFrame(
                [
                    {
                        "served entity": e.get("name"),
                        "model": e.get("entity_name")
                        or (e.get("external_model") or {}).get("name"),
                        "version": e.get("entity_version"),
                        "state": (e.get("state") or {}).get("deployment"),
                    }
                    for e in config.get("served_entities", [])
                    if isinstance(e, dict)
                ]
            )
            routes = pd.DataFrame((config.get("traffic_config") or {}).get("routes") or [])
            left, right = st.columns(2)
            with left:
                st.markdown("**Served versions**")
                st.dataframe(served, hide_index=True, use_container_width=True)
                _aliases(viewer, served)
            with right:
                st.markdown("**Traffic split**")
                if routes.empty:
                    st.caption("All traffic to the only served entity.")
                else:
                    st.dataframe(routes, hide_index=True, use_container_width=True)
                latest = next((s for s in scans if (s.get("endpoint_name") or "") == name), None)
                if latest is None:
                    st.caption("No red-team scan of this endpoint you may read.")
                elif scan_outcome(latest) != "succeeded":
                    st.metric("Latest scan", scan_outcome(latest))
                else:
                    st.metric(
                        "Latest scan ASR",
                        f"{(number(latest.get('asr')) or 0):.1f}%",  # a percentage
                        help=f"scan {latest.get('scan_id')}",
                    )
            table = next((t for t in tables if t.endswith(_payload_name(name))), None)
            if table is None:
                st.caption("Recent traffic: no access to this endpoint's payload table.")
            else:
                statement = OpsQueries([table], state.with_(endpoint="")).kpis()

                def traffic(statement: Any = statement) -> None:
                    frame = query(viewer, statement)
                    now = frame[frame["win"] == "current"]
                    if now.empty:
                        st.caption("No traffic in this period.")
                        return
                    row = now.iloc[0]
                    a, b, c = st.columns(3)
                    a.metric("Requests", f"{number(row['requests']) or 0:,.0f}")
                    b.metric("Errors", f"{number(row['errors']) or 0:,.0f}")
                    c.metric("p95 latency", f"{number(row['p95_ms']) or 0:,.0f} ms")

                panel(state, f"Traffic · {name}", [statement], traffic)
            link(state.with_(page="ops", endpoint=name), f"→ {name} in Ops", key=f"ep-{name}")
            with st.expander("Configuration"):
                st.json(config, expanded=False)
    return state


def _payload_name(endpoint: str) -> str:
    part = "".join(c if c.isalnum() or c == "_" else "_" for c in endpoint.lower()).strip("_")
    return f".{part}_payload"


def _aliases(viewer: Viewer, served: pd.DataFrame) -> None:
    models = {str(m) for m in served.get("model", pd.Series(dtype=str)).dropna() if "." in str(m)}
    for model in sorted(models):
        try:
            body = viewer.api("GET", f"/api/2.1/unity-catalog/models/{model}")
        except DashboardError:
            continue
        aliases = body.get("aliases") or []
        if aliases:
            st.caption(
                f"{model}: "
                + ", ".join(
                    f"@{a.get('alias_name')}→v{a.get('version_num')}"
                    for a in aliases
                    if isinstance(a, dict)
                )
            )
