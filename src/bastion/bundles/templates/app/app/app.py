"""__PROJECT__: a minimal app that Bastion runs behind its sign-in, acting as the user."""

from __future__ import annotations

import os

import streamlit as st
from bastion_calls import my_endpoints, user_token

st.set_page_config(page_title="__PROJECT__")
st.title("__PROJECT__")

token = user_token(st.context.headers)
if token is None:
    st.error("Open this app through Bastion (/apps/<name>/): it signs you in and forwards a token.")
    st.stop()
assert token is not None
st.write(f"Hello, {st.context.headers.get('X-Forwarded-Email') or 'you'}.")
st.subheader("Serving endpoints you may use")
st.dataframe(my_endpoints(os.environ["BASTION_HOST"], token), use_container_width=True)
