"""Ops: KPI tiles with Δ against the previous window, time series, anomalous groups and
rows, and the rows themselves — all from the same filters, in the viewer's time zone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from bastion.dashboard.analysis import Skipped, kpis, number, numeric, rank_groups
from bastion.dashboard.client import DashboardError, Viewer
from bastion.dashboard.queries import OpsQueries, Statement, payload_tables_statement
from bastion.dashboard.state import ViewState
from bastion.dashboard.views.common import empty, panel, query, save, skipped_note
from bastion.dashboard.views.filters import filter_bar
from bastion.dashboard.views.links import link


def visible_tables(viewer: Viewer) -> list[str]:
    frame = query(viewer, payload_tables_statement())
    return [
        f"{r['table_catalog']}.{r['table_schema']}.{r['table_name']}"
        for r in frame.to_dict("records")
        if r.get("table_name")
    ]


def _fetch_all(viewer: Viewer, statements: dict[str, Statement]) -> dict[str, Any]:
    """The panels' statements at once (each is one HTTP call); errors are kept per panel."""
    ctx = get_script_run_ctx()

    def run(statement: Statement) -> Any:
        add_script_run_ctx(ctx=ctx)
        try:
            return query(viewer, statement)
        except DashboardError as error:
            return error

    with ThreadPoolExecutor(max_workers=len(statements)) as pool:
        futures = {key: pool.submit(run, s) for key, s in statements.items()}
        return {key: f.result() for key, f in futures.items()}


def _raise(value: Any) -> pd.DataFrame:
    if isinstance(value, DashboardError):
        raise value
    return value


def render(viewer: Viewer, state: ViewState) -> ViewState:
    st.title("Ops")
    tables: list[str] = []
    found = panel(
        state, "Payload tables", [payload_tables_statement()], lambda: visible_tables(viewer)
    )
    if found is not None:
        tables = found
    if not tables:
        state = filter_bar(state, None)
        st.info(
            "**No access.** You may not read any serving endpoint's payload table, so there "
            "is no traffic to show. Ask the endpoint's owner for SELECT on its "
            "`<endpoint>_payload` table."
        )
        return state
    # Every statement at once (filter values included): the state comes from the URL, and a
    # changed filter reruns the page.
    ops = OpsQueries(tables, state)
    statements = ops.panels()
    with st.spinner("Loading…"):
        results = _fetch_all(viewer, statements)
    facets = results["facets"] if isinstance(results["facets"], pd.DataFrame) else None
    chosen = filter_bar(state, facets)
    if chosen != state:  # a filter widget moved: run again with the new state in the URL
        save(chosen)
        st.rerun()
    start, end = state.window()
    zone = state.zone
    st.caption(
        f"{len(tables)} payload table(s) · {start.astimezone(zone):%Y-%m-%d %H:%M} – "
        f"{end.astimezone(zone):%Y-%m-%d %H:%M} ({state.tz}) · Δ against the previous "
        f"{state.period if not state.start else 'window of the same length'}"
    )
    p99: list[float | None] = [None]

    def tiles() -> None:
        frame = _raise(results["kpis"])
        shown = kpis(frame)
        columns = st.columns(len(shown))
        for column, kpi in zip(columns, shown, strict=True):
            with column:
                value = "—" if kpi.value is None else _amount(kpi.value, kpi.unit)
                delta = None if kpi.delta is None else _amount(kpi.delta, kpi.unit, "+")
                help_text = f"n = {kpi.n} requests with a latency" if kpi.n is not None else None
                st.metric(
                    kpi.label,
                    value,
                    delta,
                    delta_color="inverse" if kpi.lower_is_better else "normal",
                    help=help_text,
                )
                if kpi.n is not None:
                    st.caption(f"n={kpi.n}" + (" (few: indicative)" if kpi.n < 20 else ""))
        p99[0] = next((k.value for k in shown if k.label == "p99"), None)

    panel(state, "KPIs", [statements["kpis"]], tiles)

    def series() -> None:
        frame = numeric(_raise(results["series"]), ("requests", "errors", "p95_ms"))
        if frame.empty:
            empty("No requests match these filters in this period.")
            return
        figure = go.Figure()
        figure.add_bar(
            x=frame["bucket"], y=frame["requests"], name="requests", marker_color="#8fb8f0"
        )
        figure.add_bar(x=frame["bucket"], y=frame["errors"], name="errors", marker_color="#e5534b")
        figure.add_scatter(
            x=frame["bucket"],
            y=frame["p95_ms"],
            name="p95 latency (ms)",
            yaxis="y2",
            mode="lines+markers",
            line={"color": "#2f3b52"},
        )
        figure.update_layout(
            barmode="overlay",
            height=320,
            margin={"l": 10, "r": 10, "t": 30, "b": 10},
            xaxis_title=f"time ({state.tz}, per {state.bucket().lower()})",
            yaxis_title="requests",
            yaxis2={"title": "p95 ms", "overlaying": "y", "side": "right"},
            legend={"orientation": "h", "y": 1.12},
        )
        st.plotly_chart(figure, use_container_width=True, key="ops_series")

    st.subheader("Traffic")
    panel(state, "Time series", [statements["series"]], series)

    st.subheader("Anomalies")
    left, right = st.columns(2)
    with left:

        def anomalies() -> None:
            ranked = rank_groups(_raise(results["groups"]))
            if not ranked:
                empty("No group departs from its trailing baseline.")
                return
            for anomaly in ranked[:8]:
                target = state.with_(
                    endpoint=anomaly.endpoint if anomaly.endpoint != "—" else "",
                    model_version=anomaly.model_version if anomaly.model_version != "—" else "",
                    requester=anomaly.requester if anomaly.requester != "—" else "",
                    status="error" if anomaly.kind == "error spike" else "all",
                )
                st.markdown(
                    f"**{anomaly.kind}** · `{anomaly.endpoint}` v{anomaly.model_version} · "
                    f"{anomaly.requester} — {anomaly.why} (score {anomaly.score:.1f})"
                )
                link(
                    target,
                    "→ its rows",
                    key=f"anomaly-{anomaly.endpoint}-{anomaly.model_version}-{anomaly.requester}-{anomaly.kind}",
                )

        panel(state, "Anomalous groups", [statements["groups"]], anomalies)

        def requesters() -> None:
            frame = numeric(_raise(results["groups"]), ("requests", "errors"))
            if frame.empty:
                return
            top = (
                frame.assign(requester=frame["requester"].fillna("—"))
                .groupby("requester")[["requests", "errors"]]
                .sum()
                .sort_values("requests", ascending=False)
                .head(8)
                .astype(int)
            )
            st.markdown("**Top requesters** (as your grants show them)")
            st.table(top)

        panel(state, "Top requesters", [], requesters)
    with right:

        def outliers() -> None:
            threshold = p99[0]
            if threshold is None:
                empty("No latency to compare.")
                return
            frame = numeric(_raise(results["outliers"]), ("total_duration_ms",))
            frame = frame[frame["total_duration_ms"] >= threshold]
            if frame.empty:
                empty("No request at or above the p99.")
                return
            frame = frame.assign(request_time=_local(frame["request_time"], state))
            st.caption(f"Latency outliers: the slowest 1 % (at or above p99, {threshold:,.0f} ms)")
            st.dataframe(frame, hide_index=True, use_container_width=True, height=260)

        panel(state, "Latency outliers", [statements["outliers"]], outliers)

    st.subheader("Rows")

    def rows() -> None:
        frame = _raise(results["rows"])
        skipped = Skipped()
        if frame.empty:
            empty("No rows match these filters.")
            return
        broken = frame["status_code"].isna() | frame["request_id"].isna()
        skipped.add("rows without a status or request id (half-ingested)", int(broken.sum()))
        frame = frame[~broken].copy()
        frame["request_time"] = _local(frame["request_time"], state)
        event = st.dataframe(
            frame,
            hide_index=True,
            use_container_width=True,
            key="ops_rows",
            on_select="rerun",
            selection_mode="single-row",
            column_config={"total_duration_ms": st.column_config.NumberColumn("latency ms")},
        )
        skipped_note(skipped)
        selected = getattr(getattr(event, "selection", None), "rows", None) or []
        chosen = frame.iloc[selected[0]] if selected else None
        if chosen is None and state.row:
            match = frame[frame["request_id"] == state.row]
            chosen = match.iloc[0] if not match.empty else None
        if chosen is not None:
            _detail(state, chosen)
            return_state[0] = state.with_(row=str(chosen["request_id"]))

    return_state = [state]
    panel(state, "Rows", [statements["rows"]], rows)
    return return_state[0]


def _amount(value: float, unit: str, sign: str = "") -> str:
    """A tile's figure: latencies of a second or more in seconds (they fit the tile)."""
    if unit == " ms" and abs(value) >= 1000:
        return f"{value / 1000:{sign},.2f} s"
    return f"{value:{sign},.1f}{unit}" if unit else f"{value:{sign},.0f}"


def _local(column: pd.Series, state: ViewState) -> pd.Series:
    values = pd.to_datetime(column, errors="coerce", utc=True)
    return values.dt.tz_convert(state.tz).dt.strftime("%Y-%m-%d %H:%M:%S")


def _detail(state: ViewState, row: pd.Series) -> None:
    with st.container(border=True):
        st.markdown(
            f"**Request** `{row['request_id']}` · status {row['status_code']} · "
            f"{number(row['total_duration_ms']) or 0:,.0f} ms · {row['requester']}"
        )
        st.text_area("request", str(row.get("request") or ""), height=90, disabled=True)
        st.text_area("response", str(row.get("response") or ""), height=90, disabled=True)
        if row.get("trace_id"):
            link(
                state.with_(page="trace", trace=str(row["trace_id"])),
                "Open its trace →",
                key="row-trace",
            )
        else:
            st.caption("No trace recorded for this request.")
