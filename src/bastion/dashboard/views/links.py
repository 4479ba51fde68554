"""Links that carry the whole view state (a deep link another person can open)."""

from __future__ import annotations

import streamlit as st

from bastion.dashboard.state import ViewState

PAGES: dict[str, object] = {}


def link(state: ViewState, label: str, *, key: str | None = None) -> None:
    page = PAGES.get(state.page)
    if page is None:
        return
    params = {k: v for k, v in state.to_params().items() if k != "page"}
    st.page_link(page, label=label, query_params=params)  # type: ignore[arg-type]
