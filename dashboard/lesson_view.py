"""What every Learn page shares: pick or profile the participant's own run, start tiny jobs from the page and follow
them, and ask a question whose answer the library computed from their numbers. Render only."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import lessons
from profiler import OpLensError, RunStoreError
from profiler.schema import ProfileConfig, ProfileRun

from . import job_view, state

# OpLens's own live run of bert-base (batch 8, seq 128, fp32) on an NVIDIA H200, kept in the repository's test data
GPU_EXAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "h200_bert_base_live.pt.trace.json.gz"
GPU_EXAMPLE_TEXT = "OpLens profiling BERT-base (batch 8, sequence 128, fp32) on an NVIDIA H200"
JOB_RUNS = "lesson_job_runs"  # session_state: the runs this session's lesson jobs saved
# small enough that twenty people queueing for one CPU still get through a lesson
LESSON_CONFIG = ProfileConfig(warmup=2, repeats=10, min_time_s=0.5, graph=False)


def _start(spec: str, config: ProfileConfig, kind: str = "profile", **extra):
    """A job tagged with this session's participant (job_view.submit: the Queue page knows it as this session's), or
    None with the refusal shown in one line (a full queue)."""
    return job_view.submit(state.job_manager(), spec, config, state.runs_dir(), kind=kind, **extra)


def submit(key: str, spec: str, config: ProfileConfig, kind: str = "profile", **extra) -> bool:
    """Start one job; `key` remembers it in the session. False when it was refused."""
    job = _start(spec, config, kind, **extra)
    if job is not None:
        st.session_state[key] = {"jobs": [job.id], "pending": []}
    return job is not None


def submit_series(key: str, jobs: list[dict]) -> None:
    """Start a series of jobs one after another (each a dict of `submit` arguments): the machine measures one at a
    time anyway, so queueing them here keeps one worker process alive instead of several."""
    first, *rest = jobs
    if submit(key, **first):
        st.session_state[key]["pending"] = rest


def optimize_run(key: str, run: ProfileRun, passes: list[str]) -> None:
    """Apply `passes` to the model of `run`, measured with that run's config (the Optimize page's saved-run path)."""
    from profiler.models.loading import reload_spec

    try:
        spec, arch = reload_spec(run.model, run.id)
    except OpLensError as exc:
        st.error(str(exc))
        return
    submit(key, spec, run.config, kind="optimize", passes=passes, arch=arch, source_run_id=run.id)


def follow(key: str, what: str) -> None:
    """Progress of the jobs under `key`, with Cancel; when the last finishes the page reruns to show the results."""

    @st.fragment(run_every=1.0)  # a second, not less: twenty sessions polling are reruns the server pays for
    def panel():
        entry = st.session_state.get(key)
        if not entry:
            return
        manager = state.job_manager()
        job = manager.get(entry["jobs"][-1])
        if job is None:
            return
        made = st.session_state.setdefault(JOB_RUNS, [])
        if job.status == "done" and job.kind in ("profile", "train") and job.run_id not in made:
            made.append(job.run_id)
        if job.status == "done" and entry["pending"]:
            nxt = _start(**entry["pending"].pop(0))
            if nxt is None:
                entry["pending"].clear()
            else:
                job = nxt
                entry["jobs"].append(job.id)
        total = len(entry["jobs"]) + len(entry["pending"])
        step = f" ({len(entry['jobs'])} of {total})" if total > 1 else ""
        if job.active:
            with st.status(f"{what}{step} ...", expanded=True):
                job_view.place(manager, job)  # its place in the class's queue and the estimated wait
                if st.button("Cancel", icon=":material/stop:", key=f"{key}_cancel"):
                    entry["pending"].clear()
                    manager.cancel(job.id)
        elif job.status == "done":
            if entry.get("shown") != job.id:  # once: rerun the whole page so its pickers list the new result
                entry["shown"] = job.id
                if job.kind == "profile":
                    st.session_state[state.RUN_KEY] = job.run_id
                st.rerun()
            st.success(f"{what}: done.")
        else:
            job_view.ended(job, what)  # what the job really did, saved runs included

    panel()


def my_run(key: str) -> ProfileRun | None:
    """The participant picks one of their runs, or profiles the lesson's model now."""
    left, right = st.columns([3, 1])
    with right:
        if st.button(f"Profile {lessons.LESSON_MODEL} now", key=f"{key}_profile", icon=":material/play_arrow:",
                     help="A small BERT: seconds on a CPU, once it is your turn on the machine"):
            submit(f"{key}_job", lessons.LESSON_MODEL, LESSON_CONFIG)
    follow(f"{key}_job", f"Profiling {lessons.LESSON_MODEL}")
    with left:
        return state.pick_run(key=f"{key}_pick", label="Your run")


def runs_of(model: str) -> list[ProfileRun]:
    """This session's readable runs of `model` (its participant's, and those its lesson jobs made), newest first."""
    out = []
    everything = state.list_runs()
    seen = {r.id for r in state.my_runs(everything)} | set(st.session_state.get(JOB_RUNS, []))
    for summary in everything:
        if summary.model == model and summary.id in seen:
            try:
                out.append(state.load_run(summary.id))
            except RunStoreError:
                continue  # deleted meanwhile
    return out


LESSONS = ["app_pages/learn_time.py", "app_pages/learn_movement.py", "app_pages/learn_precision.py",
           "app_pages/learn_fusion.py", "app_pages/learn_batch.py", "app_pages/learn_training.py"]
TITLES = ["1 · Where does the time go?", "2 · Compute vs data movement", "3 · Precision", "4 · Compilation and fusion",
          "5 · Batch size", "6 · Training: where does a step go?"]


def next_lesson(current: int) -> None:
    """A link to the lesson after lesson `current` (1-based), drawn before the page may stop for want of data."""
    if current < len(LESSONS):
        st.page_link(LESSONS[current], label=f"Next: {TITLES[current]}", icon=":material/arrow_forward:")


def passes_in(families: tuple[str, ...]) -> set[str]:
    """The names of the registered passes of these families."""
    import optimizers

    return {p.name for p in optimizers.REGISTRY.values() if p.family in families}


@st.cache_resource(show_spinner="Importing the GPU trace ...")
def gpu_example() -> ProfileRun:
    """The GPU example trace as a run, imported once per server."""
    from profiler.traces.importer import import_trace

    return import_trace(GPU_EXAMPLE)


def ask(question: lessons.Question, key: str) -> None:
    """The check-your-understanding box: choose, check, then the explanation with the participant's numbers."""
    with st.container(border=True):
        st.markdown(f"**Check your understanding.** {question.prompt}")
        choice = st.radio("Your answer", question.options, index=None, key=f"{key}_answer")
        if st.button("Check my answer", key=f"{key}_check", disabled=choice is None):
            if choice == question.correct:
                st.success(f"Right. {question.explanation}")
            else:
                st.error(f"Not quite: the answer is **{question.correct}**. {question.explanation}")
            for note in question.notes:  # after answering: the notes give the answer away
                st.caption(note)
