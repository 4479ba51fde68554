"""What every page shares: the per-user cached query, panel states (loading, empty, no
access, error), the "show SQL" toggle, links that carry the whole view state."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from bastion.dashboard.analysis import Skipped
from bastion.dashboard.client import DashboardError, NoAccess, SignedOut, Viewer
from bastion.dashboard.queries import Statement
from bastion.dashboard.state import ViewState

T = TypeVar("T")


@st.cache_data(ttl=30, show_spinner=False, max_entries=2000)
def _cached_query(key: str, sql: str, params_json: str, _viewer: Viewer) -> pd.DataFrame:
    """Keyed by the viewer (``key`` = user and token) and the statement: never shared
    between users."""
    del key
    return _viewer.query(sql, json.loads(params_json, object_hook=_revive))


def _revive(value: dict[str, Any]) -> Any:
    if set(value) == {"__datetime__"}:
        from datetime import datetime

        return datetime.fromisoformat(value["__datetime__"])
    return value


def _params_json(params: dict[str, Any]) -> str:
    def encode(value: Any) -> Any:
        if hasattr(value, "isoformat"):
            return {"__datetime__": value.isoformat()}
        raise TypeError(type(value))

    return json.dumps(params, sort_keys=True, default=encode)


def query(viewer: Viewer, statement: Statement) -> pd.DataFrame:
    return _cached_query(viewer.cache_key, statement.sql, _params_json(statement.params), viewer)


def panel(
    state: ViewState, title: str, statements: list[Statement], render: Callable[[], T]
) -> T | None:
    """Run ``render`` as one panel: its error states, and the SQL it ran when asked."""
    try:
        return render()
    except NoAccess as error:
        st.info(f"**{title}: no access.** Your grants do not cover this data. ({error})")
    except SignedOut:
        st.warning("Your sign-in ended. Reload the page to continue.")
    except DashboardError as error:
        st.error(f"**{title}** could not be loaded: {error}")
    finally:
        if state.sql == "1":
            for statement in statements:
                with st.expander(f"SQL · {title}"):
                    st.code(statement.shown(), language="sql")
    return None


def skipped_note(skipped: Skipped) -> None:
    if skipped.total:
        st.caption(f"Skipped {skipped.total} malformed rows: {skipped.describe()}.")


def empty(message: str) -> None:
    st.info(message)


def save(state: ViewState) -> None:
    """The view state into the URL (a deep link to exactly this view)."""
    wanted = state.to_params()
    if dict(st.query_params) != wanted:
        st.query_params.from_dict(wanted)
