"""The sidebar that says who is using this browser session: a workshop participant's display name (kept in the URL as
`?name=...`, so a reload keeps it), the everyone toggle, and the instructor's token. The pure checks come first;
state.participant() and state.instructor() read what `sidebar` sets."""
from __future__ import annotations

import hmac
import os

import streamlit as st

from . import state

MAX_NAME = 32
NAME_KEY = "participant"  # session_state: the accepted display name (state.participant)
INSTRUCTOR_KEY = "instructor"  # session_state: True once the token was entered (state.instructor)
TOKEN_ENV = "OPLENS_INSTRUCTOR_TOKEN"


def name_problem(name: str) -> str:
    """Why `name` cannot be a display name, in one line, or "" when it can."""
    name = name.strip()
    if not name:
        return "Type a display name (it tags your runs)."
    if len(name) > MAX_NAME:
        return f"A display name has at most {MAX_NAME} characters; '{name[:MAX_NAME]}...' is {len(name)}."
    if not name.isprintable():
        return "A display name cannot contain control characters (tabs, new lines, ...)."
    return ""


def token_matches(entered: str, expected: str | None) -> bool:
    """Whether `entered` is the instructor's token; an unset or empty token matches nothing."""
    if not expected or not entered:
        return False
    return hmac.compare_digest(entered.encode(), expected.encode())


def _accept_name() -> None:
    entered = st.session_state.get("name_input", "")
    if not entered.strip():  # cleared: no name any more, which is allowed, not an error that follows every page
        st.session_state.pop("name_problem", None)
        st.session_state.pop(NAME_KEY, None)
        st.query_params.pop("name", None)
        return
    if problem := name_problem(entered):
        st.session_state["name_problem"] = problem
        return
    st.session_state.pop("name_problem", None)
    st.session_state[NAME_KEY] = entered.strip()
    st.query_params["name"] = entered.strip()


def instructor_token_set() -> bool:
    return bool(os.environ.get(TOKEN_ENV))


def _check_token() -> None:
    if token_matches(st.session_state.get("token_input", ""), os.environ.get(TOKEN_ENV)):
        st.session_state[INSTRUCTOR_KEY] = True
        st.session_state.pop("token_problem", None)
    else:
        st.session_state["token_problem"] = "That is not the instructor's token."
    st.session_state["token_input"] = ""  # never keep the secret in the widget


def sidebar() -> None:
    """The name box, the everyone toggle and, when the server has a token, the instructor's box."""
    # a reload brings the name back from the URL; a page switch clears the URL's parameters, so put it back there
    if not state.participant():
        from_url = st.query_params.get("name", "")
        if from_url and not name_problem(from_url):
            st.session_state[NAME_KEY] = from_url.strip()
    if state.participant() and st.query_params.get("name") != state.participant():
        st.query_params["name"] = state.participant()
    with st.sidebar:
        st.session_state.setdefault("name_input", state.participant())
        st.text_input("Your name", key="name_input", on_change=_accept_name, max_chars=MAX_NAME * 2,
                      help="Tags your runs and results; you see your own by default. Kept in the address bar, so "
                           "bookmark it to come back.")
        if problem := st.session_state.get("name_problem"):
            st.error(problem)
        if state.instructor():
            st.caption("Instructor: you see everyone's runs and the class leaderboard.")
        else:
            st.toggle("Show everyone's runs", key=state.EVERYONE_KEY, disabled=not state.participant())
            if instructor_token_set():
                st.text_input("Instructor token", key="token_input", type="password", on_change=_check_token)
                if problem := st.session_state.get("token_problem"):
                    st.error(problem)
