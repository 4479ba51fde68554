"""A chat page for the __PROJECT__ agent, run by Bastion behind its sign-in.

Every question is asked with the signed-in user's forwarded token (``chat.py``), so the agent
sees the user, and the endpoint's grants, rate limits and inference table apply to them.
"""

from __future__ import annotations

import os

import streamlit as st
from chat import AskError, ask, user_token

st.set_page_config(page_title="__PROJECT__")
st.title("__PROJECT__")

token = user_token(st.context.headers)
if token is None:
    st.error(
        "No user token: open this app through Bastion (/apps/<name>/), which signs you in and "
        "forwards a token that is you (the app's user_api_scopes in bastion.yml)."
    )
    st.stop()
assert token is not None
user = st.context.headers.get("X-Forwarded-Email") or "you"
st.caption(f"Signed in as {user}: the agent answers you with your own permissions.")

question = st.chat_input("Ask about our opening hours")
if question:
    st.chat_message("user").write(question)
    try:
        answer = ask(os.environ["BASTION_HOST"], token, os.environ["AGENT_ENDPOINT"], question)
    except AskError as error:
        st.error(str(error))
    else:
        st.chat_message("assistant").write(answer)
