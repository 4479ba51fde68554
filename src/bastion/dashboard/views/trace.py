"""Trace: a payload row's or failed case's span tree and waterfall (gateway phases —
authenticate, rate limit, guardrails, upstream attempts — and agent spans), paged on the
server for large traces."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from bastion.dashboard.analysis import number, span_tree
from bastion.dashboard.client import DashboardError, Viewer
from bastion.dashboard.queries import (
    trace_of_request_statement,
    trace_size_statement,
    trace_statement,
)
from bastion.dashboard.state import ViewState
from bastion.dashboard.views.common import empty, panel, query
from bastion.dashboard.views.links import link

PAGE_SIZE = 200


def _trace_of(viewer: Viewer, request_id: str) -> str:
    from bastion.dashboard.views.ops import visible_tables

    try:
        tables = visible_tables(viewer)
        if not tables:
            return ""
        frame = query(viewer, trace_of_request_statement(tables, request_id))
    except DashboardError as error:
        st.info(f"The request's trace cannot be looked up: {error}")
        return ""
    if frame.empty or not frame["trace_id"].iloc[0]:
        st.info(f"No trace recorded for request {request_id} that you may read.")
        return ""
    return str(frame["trace_id"].iloc[0])


def render(viewer: Viewer, state: ViewState) -> ViewState:
    st.title("Trace")
    if state.row and not state.trace:
        state = state.with_(trace=_trace_of(viewer, state.row))
    trace_id = st.text_input("Trace id", state.trace, key=f"trace_id:{state.trace}").strip()
    state = state.with_(trace=trace_id if trace_id.replace("-", "").isalnum() else "")
    if not state.trace:
        empty(
            "Pick a row in Ops (or a failed case in Risk) and open its trace, or paste a trace id."
        )
        return state
    size_statement = trace_size_statement(state.trace)
    total: list[int] = [0]

    def summary() -> None:
        frame = query(viewer, size_statement)
        total[0] = int(number(frame["spans"].iloc[0]) or 0) if not frame.empty else 0
        if total[0]:
            st.caption(f"{total[0]} spans")

    panel(state, "Trace size", [size_statement], summary)
    if not total[0]:
        empty(
            "No spans for this trace that you may read (it may still be being written, or "
            "system.tracing.spans is not granted to you)."
        )
        return state
    pages = max(1, -(-total[0] // PAGE_SIZE))
    page = st.number_input("Page", 1, pages, 1, key="trace_page") - 1 if pages > 1 else 0
    statement = trace_statement(state.trace, int(page), PAGE_SIZE)

    def tree() -> None:
        frame = query(viewer, statement).head(PAGE_SIZE)
        if frame.empty:
            empty("No spans on this page.")
            return
        frame["start_time"] = pd.to_datetime(frame["start_time"], errors="coerce", utc=True)
        frame["end_time"] = pd.to_datetime(frame["end_time"], errors="coerce", utc=True)
        ordered = span_tree(frame)
        origin = frame["start_time"].min()
        labels, starts, lengths, colors, texts = [], [], [], [], []
        for depth, span in ordered:
            start = span["start_time"]
            offset = (start - origin).total_seconds() * 1000 if pd.notna(start) else 0.0
            duration = number(span.get("duration_ms")) or 0.0
            labels.append("\u2003" * depth + str(span.get("name") or "?"))
            starts.append(offset)
            lengths.append(max(duration, 0.05))
            failed = str(span.get("status_code") or "").upper() == "ERROR"
            colors.append("#e5534b" if failed else "#4f8fe6" if depth else "#2f3b52")
            texts.append(f"{duration:.2f} ms")
        figure = go.Figure(
            go.Bar(
                y=labels,
                x=lengths,
                base=starts,
                orientation="h",
                marker_color=colors,
                text=texts,
                textposition="outside",
            )
        )
        figure.update_layout(
            height=max(240, 28 * len(labels) + 60),
            yaxis={"autorange": "reversed"},
            xaxis_title="ms since the trace started",
            margin={"l": 10, "r": 40, "t": 20, "b": 10},
        )
        st.plotly_chart(figure, use_container_width=True, key="trace_waterfall")
        names = [label for label in labels]
        choice = st.selectbox("Span", names, key="trace_span")
        span = ordered[names.index(choice)][1]
        attributes = span.get("attributes")
        pairs = dict(attributes) if isinstance(attributes, list | dict) else {}
        st.json(
            {
                "span_id": span.get("span_id"),
                "parent": span.get("parent_span_id"),
                "kind": span.get("kind"),
                "status": span.get("status_code"),
                "message": span.get("status_message"),
                "duration_ms": span.get("duration_ms"),
                "attributes": pairs,
            },
            expanded=False,
        )

    panel(state, "Span tree", [statement], tree)
    link(state.with_(page="ops"), "← back to Ops", key="trace-back")
    return state
