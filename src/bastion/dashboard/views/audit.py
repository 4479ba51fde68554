"""Audit: who did what — state changes, data reads, denials — on one timeline, filterable;
visible only to those granted SELECT on system.access.audit."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from bastion.dashboard.client import Viewer
from bastion.dashboard.queries import audit_statement
from bastion.dashboard.state import ViewState
from bastion.dashboard.views.common import empty, panel, query
from bastion.dashboard.views.filters import filter_bar


def render(viewer: Viewer, state: ViewState) -> ViewState:
    st.title("Audit")
    state = filter_bar(state, None, ops=False)
    statement = audit_statement(state)

    def timeline() -> None:
        frame = query(viewer, statement)
        if frame.empty:
            empty("No audit events match these filters.")
            return
        frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True).dt.tz_convert(state.tz)
        frame["kind"] = frame.apply(_kind, axis=1)
        figure = px.scatter(
            frame,
            x="event_time",
            y="kind",
            color="kind",
            hover_data=["user", "action_name", "status"],
            height=260,
        )
        figure.update_layout(
            xaxis_title=f"time ({state.tz})",
            showlegend=False,
            margin={"l": 10, "r": 10, "t": 20, "b": 10},
        )
        st.plotly_chart(figure, use_container_width=True, key="audit_timeline")
        frame["event_time"] = frame["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S")
        frame["request_params"] = frame["request_params"].map(
            lambda v: ", ".join(f"{k}={x}" for k, x in (v or [])) if isinstance(v, list) else v
        )
        st.dataframe(frame, hide_index=True, use_container_width=True, height=420)

    panel(state, "Audit events", [statement], timeline)
    return state


def _kind(row: pd.Series) -> str:
    status = row.get("status")
    if status is not None and pd.notna(status) and int(status) >= 400:
        return "denial / failure"
    action = str(row.get("action_name") or "")
    if (
        action in ("executeStatement", "checkPrivilege", "commandSubmit")
        or "read" in action.lower()
    ):
        return "data read"
    return "state change"
