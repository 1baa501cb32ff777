"""How a page submits a job and shows it while it waits or runs (render only; the job layer is profiler.jobs)."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import streamlit as st

from profiler.jobs import DuplicateJob, Job, JobManager
from profiler.schema import OpLensError

from . import state

OWN = "own_job_ids"


def submit(jobs: JobManager, *args, **kwargs) -> Job | None:
    """jobs.submit for this session's participant; a refusal (queue full, no such executor) shown as one line. The
    same job already queued or running is not started twice: that one is returned, and said so."""
    try:
        job = jobs.submit(*args, participant=state.participant(), owner=state.participant() or _session(), **kwargs)
    except DuplicateJob as exc:
        st.info(str(exc))
        return exc.job
    except OpLensError as exc:
        st.error(str(exc))
        return None
    st.session_state.setdefault(OWN, []).append(job.id)
    return job


def _session() -> str:
    """This browser session, for a participant without a name: two unnamed people are two owners."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return f"session:{ctx.session_id}" if ctx is not None else "session:"


def own_ids() -> list[str]:
    """The jobs this browser session started (what an unnamed session may see and cancel on the Queue page)."""
    return st.session_state.get(OWN, [])


def recall(jobs: JobManager, key: str, kind: str) -> Job | None:
    """The job this session started under `key`; after a reload, the participant's newest job of `kind`."""
    job = jobs.get(st.session_state.get(key))
    if job is None and state.participant():
        job = jobs.latest(state.participant(), kind)
        if job is not None:
            st.session_state[key] = job.id
    return job


def place(jobs: JobManager, job: Job) -> None:
    """A queued or running job: its place in the queue and estimated wait, or its progress."""
    if job.status == "queued":
        st.info(jobs.waiting_text(job), icon=":material/hourglass_top:")
    else:
        st.progress(job.fraction, text=jobs.waiting_text(job))


def progress(jobs: JobManager, job: Job) -> None:
    """A queued or running job: its place (place()) and a Cancel button."""
    place(jobs, job)
    if st.button("Cancel", key=f"cancel_{job.id}", icon=":material/stop:"):
        st.toast(jobs.cancel(job.id))


def ended(job: Job, what: str) -> None:
    """A job that was cancelled or failed: what it really did, saved runs included."""
    if job.status == "cancelled":
        st.warning(job.message[:1].upper() + job.message[1:])
    elif job.status == "failed":
        st.error(f"{what} failed: {job.error}")


def panel(jobs: JobManager, key: str, kind: str, title: str, what: str, on_done: Callable[[Job], None]) -> None:
    """The session's job of `kind` (under `key`): while it waits or runs, `title` with its place, progress and
    Cancel; when done, `on_done(job)`; when it was cancelled or failed, what it really did (`what` failed: ...)."""
    job = recall(jobs, key, kind)
    if job is not None:
        show(jobs, job, what, on_done, title.format(spec=job.spec, kind=job.kind.capitalize()))


def show(jobs: JobManager, job: Job, what: str, on_done: Callable[[Job], None], title: str = "") -> None:
    """One job as a page shows it: while it waits or runs, its progress and Cancel (inside a status box titled
    `title`, when given); when done, `on_done(job)`; when cancelled or failed, what it really did."""
    if job.active:
        with st.status(title, expanded=True) if title else nullcontext():
            progress(jobs, job)
    elif job.status == "done":
        on_done(job)
    else:
        ended(job, what)
