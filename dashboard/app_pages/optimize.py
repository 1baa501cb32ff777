import json

import pandas as pd
import streamlit as st

import optimizers
from dashboard import comparison_view, job_view, sources, state
from optimizers import tables
from profiler.schema import ProfileConfig, SavedComparison

st.title("Optimize")
state.about("""
Pick passes, in order, and run them. OpLens applies them to a copy of the model, checks the outputs against the
original on the same inputs (cosine similarity, max error, top-1 agreement; a result outside the tolerance is marked
**failing**), then profiles the original and the optimized model the same way. The speedup is a ratio of median
latencies with the range their 95% intervals allow. Time to apply (compilation, calibration) is shown apart from
latency. **Search** tries pipelines for you within a time budget. Which pass wins depends on the CPU or GPU:
measure, do not assume. The model can come from anywhere the Profile page takes one, or from a saved run (its model,
measured with its config). Every result is saved and listed on the **Runs** page under *Comparisons*.
""")
jobs = state.job_manager()
choice = sources.pick_model("opt_", saved_runs=True)
if choice.problem:
    st.error(choice.problem)
    st.stop()
if choice.config is not None:  # a saved run: its model, measured with its config
    config = choice.config
else:
    c1, c2, c3 = st.columns(3)
    device = c1.selectbox("Device", state.available_devices(), key="opt_device")
    batch = c2.number_input("Batch size", 0, 4096, int(choice.default_batch), key="opt_batch",
                            help="0 keeps the model's default")
    seq_label = "Image size (pixels)" if choice.kind == "image" else "Sequence length (tokens)"
    seq = c3.number_input(seq_label, 0, 65536, int(choice.default_seq or 0), key="opt_seq",
                          help="0 keeps the model's default")
    config = ProfileConfig(device=device, batch_size=int(batch), seq_len=int(seq), warmup=2, repeats=10, min_time_s=1.0)
if not choice.spec:
    st.info("Choose a model first: pick a sample, upload a file, type a path or hub id, or pick a saved run.")
    st.stop()
job_args = dict(arch=choice.arch, source_run_id=choice.run_id)


def check_job():
    """The job that checks, in a worker process, which passes apply to this model and config; one per model and
    config in this session, so changing passes or switching pages does not load the model again."""
    key = json.dumps([choice.spec, choice.arch, choice.run_id, config.to_dict()], sort_keys=True)
    checks = st.session_state.setdefault("opt_checks", {})
    job = jobs.get(checks.get(key))
    if job is None or job.status == "cancelled":
        job = job_view.submit(jobs, choice.spec, config, state.runs_dir(), kind="check", **job_args)
        if job is None:
            st.stop()
        checks[key] = job.id
    st.session_state["opt_check_job"] = job.id
    return job


check = check_job()
if check.status == "failed":
    st.error(f"Cannot optimize this model: {check.error}")
    st.stop()
if check.active:
    @st.fragment(run_every=0.5)
    def wait_for_check():
        if not check.active:
            st.rerun()
        st.progress(check.fraction, text=f"Checking which passes apply to {check.spec} (in a worker process): "
                                         f"{check.stage} ...")

    wait_for_check()
    table = []
else:
    table = check.result
    with st.expander("All passes, and why any does not apply to this model here", expanded=False):
        rows = tables.applicability_rows(table)
        order = ["pass", "applies", "why not", "emulated here", "family", "description"]
        frame = pd.DataFrame(rows)
        st.dataframe(frame[[c for c in order if c in frame.columns]], hide_index=True, width="stretch",
                     column_config={"why not": st.column_config.TextColumn(width="large")})
        # the reasons in full, as text: a table cell cuts them at its width
        st.markdown("\n".join(f"- **{r['pass']}**: {r['why not']}" for r in rows if r["applies"] == "no"))

tab_apply, tab_search = st.tabs(["Apply passes", "Search"])
with tab_apply:
    usable = tables.usable_passes(table)
    if check.active:
        st.caption("The passes that apply are offered here once the check is done.")
        chosen = []
    else:
        labels = tables.pass_label(table)
        chosen = st.multiselect("Passes, in the order they run", usable, key="opt_passes", format_func=labels.get,
                                help="Only passes that apply to this model on this device are offered")
    problems = optimizers.conflicts(chosen) if chosen else []
    for p in problems:
        st.error(f"Cannot combine: {p}")
    if st.button("Apply and measure", type="primary", disabled=not chosen or bool(problems), key="opt_go"):
        job = job_view.submit(jobs, choice.spec, config, state.runs_dir(), kind="optimize", passes=chosen, **job_args)
        if job is not None:
            st.session_state["opt_job"] = job.id
with tab_search:
    budget = st.slider("Time budget (seconds)", 30, 1800, 120, step=30, key="search_budget")
    emulated = [row["pass"] for row in table if row["applies"] and row.get("emulated here")]
    with_emulated = st.checkbox(f"Also try {', '.join(emulated)} (emulated on this CPU: slower, and slow to time)",
                                key="search_emulated") if emulated else False
    if st.button("Search", type="primary", key="search_go"):
        job = job_view.submit(jobs, choice.spec, config, state.runs_dir(), kind="search", budget_s=budget,
                              include_emulated=with_emulated, **job_args)
        if job is not None:
            st.session_state["search_job"] = job.id


def show_saved(job) -> None:
    comparison_view.show(SavedComparison.from_dict(job.result))
    st.page_link("app_pages/runs.py", label="Saved: find it again on the Runs page", icon=":material/history:")


@st.fragment(run_every=0.5)
def results():
    for key, kind in (("opt_job", "optimize"), ("search_job", "search")):
        job_view.panel(jobs, key, kind, "{kind} on {spec} ...", kind.capitalize(), show_saved)


results()
