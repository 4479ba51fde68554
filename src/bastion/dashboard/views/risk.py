"""Risk: red-team scans (a scan that ran no attack or errored is *failed*, never 0 % ASR),
ASR by category × strategy × severity with n, failed cases, scan-to-scan comparison, and a
new scan launched from the page."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from bastion.dashboard.analysis import (
    Skipped,
    asr_table,
    number,
    results_frame,
    scan_counts,
    scan_outcome,
)
from bastion.dashboard.client import Viewer
from bastion.dashboard.state import ViewState
from bastion.dashboard.views.common import empty, panel, skipped_note
from bastion.dashboard.views.filters import filter_bar
from bastion.dashboard.views.links import link

_NO_SQL: list[Any] = []


@st.cache_data(ttl=15, show_spinner=False, max_entries=500)
def _get(key: str, path: str, _viewer: Viewer) -> Any:
    del key
    return _viewer.api("GET", path)


def render(viewer: Viewer, state: ViewState) -> ViewState:
    st.title("Risk")
    state = filter_bar(state, None, ops=False)
    scans: list[dict[str, Any]] = []

    def listing() -> None:
        body = _get(viewer.cache_key, "/api/2.0/redteam/scans", viewer)
        scans.extend(s for s in body.get("scans", []) if isinstance(s, dict) and s.get("scan_id"))

    panel(state, "Scans", _NO_SQL, listing)
    _launcher(viewer)
    if not scans:
        empty(
            "No red-team scans you may read yet. Launch one above, or run `bastion redteam scan`."
        )
        return state
    table = pd.DataFrame(
        [
            {
                "scan_id": s.get("scan_id"),
                "endpoint": s.get("endpoint_name") or s.get("endpoint"),
                "created": s.get("created_at"),
                "outcome": scan_outcome(s),
                "attacks": scan_counts(s)[0],
                "ASR": "—"
                if scan_outcome(s) != "succeeded"
                else f"{(number(s.get('asr')) or 0):.1f}%",  # the API's ASR is a percentage
                "message": s.get("message") or "",
            }
            for s in scans
        ]
    )
    st.dataframe(table, hide_index=True, use_container_width=True, height=200)
    ids = [str(s["scan_id"]) for s in scans]
    current = state.scan if state.scan in ids else ids[0]
    picked = st.selectbox("Scan", ids, index=ids.index(current), key="risk_scan")
    others = ["(none)", *[i for i in ids if i != picked]]
    compare = st.selectbox(
        "Compare with (before → this scan)",
        others,
        index=others.index(state.scan_b) if state.scan_b in others else 0,
        key="risk_compare",
    )
    state = state.with_(scan=picked, scan_b="" if compare == "(none)" else compare)
    scan = next(s for s in scans if str(s["scan_id"]) == picked)
    if scan_outcome(scan) == "failed":
        st.error(
            f"Scan {picked} **failed**: {scan.get('message') or 'it ran no attack'}. "
            "Its ASR is not 0 %: it is unknown."
        )
    skipped = Skipped()

    def breakdown() -> None:
        body = _get(viewer.cache_key, f"/api/2.0/redteam/scans/{picked}/results", viewer)
        frame = results_frame(body.get("results", []), skipped)
        if frame.empty:
            empty("This scan has no judged attacks.")
            skipped_note(skipped)
            return
        by_cell = asr_table(frame, ["risk_category", "strategy"])
        heat = by_cell.pivot(index="risk_category", columns="strategy", values="asr")
        counts = by_cell.pivot(index="risk_category", columns="strategy", values="n")
        figure = px.imshow(
            heat,
            text_auto=".0%",
            color_continuous_scale="Reds",
            zmin=0,
            zmax=1,
            aspect="auto",
            labels={"color": "ASR"},
        )
        figure.update_traces(
            customdata=counts.values,
            hovertemplate=("%{y} × %{x}<br>ASR %{z:.0%} (n=%{customdata})<extra></extra>"),
        )
        figure.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10})
        st.plotly_chart(figure, use_container_width=True, key="risk_heat")
        left, right = st.columns(2)
        with left:
            st.markdown("**Top failing categories**")
            st.dataframe(
                asr_table(frame, ["risk_category"]).head(5),
                hide_index=True,
                use_container_width=True,
            )
            st.markdown("**By severity**")
            st.dataframe(asr_table(frame, ["severity"]), hide_index=True, use_container_width=True)
        with right:
            st.markdown("**Top failing strategies**")
            st.dataframe(
                asr_table(frame, ["strategy"]).head(5), hide_index=True, use_container_width=True
            )
        st.markdown("**Failed cases** (the attack succeeded)")
        failed = frame[frame["attack_success"]]
        if state.q:
            mask = failed["prompt"].str.lower().str.contains(state.q.lower(), regex=False)
            failed = failed[mask]
        st.dataframe(
            failed[
                ["risk_category", "strategy", "severity", "prompt", "response", "reason"]
            ].rename(columns={"prompt": "input", "response": "output", "reason": "judge reason"}),
            hide_index=True,
            use_container_width=True,
            height=300,
        )
        cases = failed[failed["request_ids"].map(bool)]
        if not cases.empty:
            labels = [
                f"{r.risk_category} · {r.strategy} · {str(r.objective)[:60]}"
                for r in cases.itertuples()
            ]
            choice = st.selectbox("Open the trace of a failed case", labels, key="risk_case")
            request_ids = list(cases.iloc[labels.index(choice)]["request_ids"])
            target = state.with_(page="trace", trace="", row=str(request_ids[-1]))
            link(target, "→ its trace", key="risk-trace")
        skipped_note(skipped)

    st.subheader(f"Attack success rate · {picked}")
    panel(state, "ASR breakdown", _NO_SQL, breakdown)
    if state.scan_b:
        st.subheader(f"Comparison · {state.scan_b} → {picked}")
        panel(state, "Scan comparison", _NO_SQL, lambda: _diff(viewer, state.scan_b, picked))
    link(state.with_(page="ops", scan_type="redteam"), "→ this traffic in Ops", key="risk-ops")
    return state


def _diff(viewer: Viewer, before: str, after: str) -> None:
    body = _get(viewer.cache_key, f"/api/2.0/redteam/scans/{before}/diff/{after}", viewer)
    counts = {k: len(v) for k, v in body.items() if isinstance(v, list)}
    cols = st.columns(max(len(counts), 1))
    for column, (key, n) in zip(cols, sorted(counts.items()), strict=False):
        column.metric(key.replace("_", " "), n)
    deltas = body.get("asr_delta") or body.get("cells") or []
    if isinstance(deltas, list) and deltas:
        st.dataframe(pd.DataFrame(deltas), hide_index=True, use_container_width=True)
    for key in ("new", "fixed", "still_failing", "regressed"):
        rows = body.get(key)
        if isinstance(rows, list) and rows:
            with st.expander(f"{key.replace('_', ' ')} ({len(rows)})"):
                st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)


def _launcher(viewer: Viewer) -> None:
    with st.expander("Launch a new scan"):
        with st.form("new_scan"):
            endpoint = st.text_input("Endpoint")
            categories = st.multiselect(
                "Risk categories",
                ["violence", "hate_unfairness", "sexual", "self_harm"],
                default=["violence", "hate_unfairness"],
            )
            strategies = st.multiselect(
                "Strategies",
                ["baseline", "base64", "rot13", "leetspeak", "flip", "jailbreak"],
                default=["baseline"],
            )
            objectives = st.number_input("Objectives per category", 1, 50, 2)
            submitted = st.form_submit_button("Start scan")
        if submitted and endpoint:
            try:
                started = viewer.api(
                    "POST",
                    "/api/2.0/redteam/scans",
                    json={
                        "endpoint": endpoint,
                        "risk_categories": categories,
                        "strategies": strategies,
                        "num_objectives": int(objectives),
                    },
                )
            except Exception as error:  # shown, not raised: the page stays usable
                st.error(f"The scan did not start: {error}")
                return
            st.session_state["launched_scan"] = started.get("scan_id")
        launched = st.session_state.get("launched_scan")
        if launched:
            try:
                progress = viewer.api("GET", f"/api/2.0/redteam/scans/{launched}")
            except Exception as error:
                st.error(f"Scan {launched}: {error}")
                return
            total, done = scan_counts(progress)
            st.progress(
                min(done / total, 1.0) if total else 0.0,
                text=f"Scan {launched}: {progress.get('status')} · {done:.0f}/{total:.0f}",
            )
            if scan_outcome(progress) == "running":
                st.button("Refresh progress")
