"""The filter bar: period, time zone, endpoint, model version, status, requester,
environment, scan type, free text. Every panel of a page reads the same state."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bastion.dashboard.state import PERIODS, SCAN_TYPES, STATUSES, ViewState, time_zones

#: Widget keys carry the value the URL gave them, so a link that changes a filter gets a
#: fresh widget showing it (a keyed widget would otherwise keep its old value).
COMMON_ZONES = (
    "UTC",
    "Asia/Tokyo",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Australia/Sydney",
)


def _choice(label: str, options: list[str], current: str, key: str) -> str:
    values = list(dict.fromkeys([*options, current] if current else options))
    labels = ["(all)", *values]
    index = labels.index(current) if current in labels else 0
    picked = st.selectbox(label, labels, index=index, key=f"{key}:{current}")
    return "" if picked == "(all)" else str(picked)


def filter_bar(state: ViewState, facets: pd.DataFrame | None, *, ops: bool = True) -> ViewState:
    with st.sidebar:
        st.subheader("Filters")
        period = st.selectbox(
            "Period",
            list(PERIODS),
            index=list(PERIODS).index(state.period),
            key=f"f_period:{state.period}",
        )
        zones = list(dict.fromkeys([*COMMON_ZONES, state.tz]))
        tz = st.selectbox("Time zone", zones, index=zones.index(state.tz), key=f"f_tz:{state.tz}")
        if tz not in time_zones():
            tz = "UTC"
        changes = {"period": period, "tz": tz}
        if period != state.period:
            changes.update(start="", end="")
        if ops:

            def values(column: str) -> list[str]:
                if facets is None or column not in facets.columns:
                    return []
                return sorted({str(v) for v in facets[column].dropna()})[:500]

            changes["endpoint"] = _choice(
                "Endpoint", values("endpoint_name"), state.endpoint, "f_ep"
            )
            changes["model_version"] = _choice(
                "Model version", values("model_version"), state.model_version, "f_mv"
            )
            changes["environment"] = _choice(
                "Environment", values("environment"), state.environment, "f_env"
            )
            changes["scan_type"] = st.selectbox(
                "Scan type",
                list(SCAN_TYPES),
                index=list(SCAN_TYPES).index(state.scan_type),
                key=f"f_scan:{state.scan_type}",
                help="normal traffic, red-team scans, evaluations",
            )
        changes["requester"] = (
            _choice(
                "Requester" if ops else "User",
                values("requester") if ops else [],
                state.requester,
                "f_req",
            )
            if ops
            else st.text_input("User", state.requester, key=f"f_user:{state.requester}").strip()
        )
        status_options = list(STATUSES)
        if state.status not in status_options:
            status_options.append(state.status)
        changes["status"] = st.selectbox(
            "Status",
            status_options,
            index=status_options.index(state.status),
            key=f"f_status:{state.status}",
        )
        changes["q"] = st.text_input(
            "Search request / response" if ops else "Search actions", state.q, key=f"f_q:{state.q}"
        ).strip()[:200]
        changes["sql"] = (
            "1" if st.toggle("Show SQL", value=state.sql == "1", key=f"f_sql:{state.sql}") else ""
        )
    new = state.with_(**changes)
    if new != state:
        new = new.with_(row="")
    return new
