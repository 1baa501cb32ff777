import streamlit as st

from dashboard import state
from profiler import bottlenecks

st.title("Bottlenecks")
state.about("""
A ranked list of where the time goes, each with the evidence from this run and the optimization that usually
fixes it. Ranking is by the share of time a finding concerns; a finding is a lead to check, not a verdict.
""")
run = state.pick_run()
if run is not None:
    findings = bottlenecks.find(run)
    if not findings:
        st.success("No single bottleneck stands out: time is spread evenly over many operators.")
    for i, f in enumerate(findings, 1):
        with st.container(border=True):
            st.markdown(f"**{i}. {f.title}**")
            st.markdown(f"*Evidence:* {f.evidence}")
            st.markdown(f"*Usually fixed by:* {f.fix}")
