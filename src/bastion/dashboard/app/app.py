"""The Bastion operations dashboard (Streamlit). Deployed by ``bastion up`` as the app
``dashboard``; every read uses the viewer's forwarded token."""

from __future__ import annotations

import os
from collections.abc import Callable

import streamlit as st

from bastion.dashboard.client import Viewer
from bastion.dashboard.state import ViewState
from bastion.dashboard.views import audit, models, ops, risk, trace
from bastion.dashboard.views.common import save
from bastion.dashboard.views.links import PAGES

st.set_page_config(page_title="Bastion · Operations", page_icon=":material/shield:", layout="wide")

found = Viewer.from_request(st.context.headers, os.environ)
if found is None:
    st.error(
        "No user token: open this dashboard through Bastion (/apps/dashboard/), which signs "
        "you in and forwards a token that is you. (Local development: set "
        "BASTION_DASHBOARD_DEV_TOKEN.)"
    )
    st.stop()
assert found is not None
viewer: Viewer = found


def page(key: str, render: Callable[[Viewer, ViewState], ViewState]) -> Callable[[], None]:
    def run() -> None:
        state = ViewState.from_params(st.query_params.to_dict()).with_(page=key)
        state = render(viewer, state)
        save(state.with_(page=key))

    run.__name__ = f"page_{key}"
    return run


pages = {
    "ops": st.Page(
        page("ops", ops.render),
        title="Ops",
        icon=":material/monitoring:",
        url_path="ops",
        default=True,
    ),
    "risk": st.Page(
        page("risk", risk.render), title="Risk", icon=":material/gpp_maybe:", url_path="risk"
    ),
    "trace": st.Page(
        page("trace", trace.render), title="Trace", icon=":material/account_tree:", url_path="trace"
    ),
    "models": st.Page(
        page("models", models.render),
        title="Models & endpoints",
        icon=":material/hub:",
        url_path="models",
    ),
    "audit": st.Page(
        page("audit", audit.render), title="Audit", icon=":material/history:", url_path="audit"
    ),
}
PAGES.update(pages)
current = st.navigation(list(pages.values()), position="hidden")
shared = ViewState.from_params(st.query_params.to_dict())
with st.sidebar:
    st.markdown(f"**Bastion** · signed in as `{viewer.user or 'unknown'}`")
    for key, target in pages.items():
        params = {
            k: v for k, v in shared.with_(page=key, row="").to_params().items() if k != "page"
        }
        st.page_link(target, label=target.title, icon=target.icon, query_params=params)
    st.markdown("[Sign out](/logout)")
current.run()
