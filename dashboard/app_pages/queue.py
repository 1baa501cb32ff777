import pandas as pd
import streamlit as st

from dashboard import job_view, queue_view, state

st.title("Queue")
state.about("""
Every measurement on this machine waits its turn in one queue, first come first served, so nobody's timing is
disturbed by anybody else's. The table shows what runs now and what waits, with an estimate of when each starts and
ends (from how long recent jobs of the same kind took here). Other participants' model names are hidden. You can
cancel your own jobs here or on the page that started them; a reload or a new tab finds them again under your name.
""")
jobs = state.job_manager()
me, instructor = state.participant(), state.instructor()
if instructor and st.button("Clear the queue", icon=":material/clear_all:",
                            help="Instructor: cancels every waiting job; running ones finish"):
    st.success(f"Cancelled {jobs.clear_queue()} waiting jobs.")


@st.fragment(run_every=1.0)
def queue_panel():
    rows = queue_view.queue_rows(jobs, me, instructor, job_view.own_ids())
    if not rows:
        st.success("Nothing is waiting or running: a job started now begins at once.")
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    for job in [j for j in jobs.queue() if jobs.owns(j, me, job_view.own_ids())]:
        with st.container(border=True):
            st.markdown(f"Your **{job.kind}** of `{job.spec}`")
            job_view.progress(jobs, job)


queue_panel()
st.subheader("Your recent jobs")
history = queue_view.history_rows(jobs, me, job_view.own_ids())
if history:
    st.dataframe(pd.DataFrame(history), hide_index=True, width="stretch")
else:
    st.caption("None yet.")
