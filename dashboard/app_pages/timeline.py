from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts, job_view, state
from profiler import TraceFormatError, policy
from profiler.traces.read import default_categories, steps, summary, window

st.title("Timeline")
state.about("""
One recorded inference as a timeline: each bar is an operator (and, on a GPU, a kernel or memcpy) placed at its start
time, one row per thread or CUDA stream. Nested operators overlap their parents. The raw trace is the file
`torch.profiler` wrote; download it to dig deeper in TensorBoard or Perfetto. You can also open a trace recorded
elsewhere (`.pt.trace.json` or `.json.gz` from `torch.profiler`, old or new format).
""")


@st.fragment(run_every=0.5)
def import_result():
    jobs = state.job_manager()
    job = jobs.get(st.session_state.get("tl_import_job"))
    if job is not None:
        job_view.show(jobs, job, "Importing the trace", imported)


def imported(job) -> None:
    st.session_state[state.RUN_KEY] = job.run_id
    st.success(f"Imported as run {job.run_id}; pick it on any page.")


source = st.radio("Trace from", ["A saved run", "A trace file"], horizontal=True, key="tl_source")
trace_path, title = None, ""
if source == "A saved run":
    run = state.pick_run()
    if run is not None and run.gpu is not None:  # an imported GPU trace: its per-step timeline, computed at import
        g = run.gpu
        st.subheader(f"GPU time per step ({g.steps} step{'s' if g.steps != 1 else ''}, window: {g.window_source})")
        cols = st.columns(5)
        cols[0].metric("Window", f"{g.window_ms:.3g} ms")
        cols[1].metric("Busy", f"{g.busy_ms:.3g} ms", f"{100 * g.busy_ms / g.window_ms:.0f}%" if g.window_ms else "",
                       delta_color="off", delta_arrow="off")
        cols[2].metric("Idle", f"{g.idle_ms:.3g} ms", f"host wait {g.idle_host_ms:.2g} · sync {g.idle_sync_ms:.2g} · "
                       f"gaps < 30 us {g.idle_short_ms:.2g} · other {g.idle_other_ms:.2g}", delta_color="off",
                       delta_arrow="off",
                       help="host wait: the CPU had not launched the next kernel; sync: the CPU was blocked in a "
                            "synchronize; gaps under 30 us between kernels already queued; other")
        cols[3].metric("Communication", f"{g.comm_ms:.3g} ms", f"exposed {g.exposed_comm_ms:.2g} ms; memcpy "
                       f"{g.memcpy_ms:.2g}, exposed {g.exposed_memcpy_ms:.2g}", delta_color="off", delta_arrow="off",
                       help="exposed: not overlapped by computation (memcpy: by computation or communication)")
        cols[4].metric(
            "Launch to start",
            f"{1e3 * g.launch_overhead_ms:.3g} us",
            f"{g.short_kernels:g} kernels < 10 us, {g.kernels_shorter_than_launch:g} shorter than their launch",
            delta_color="off",
            delta_arrow="off",
            help=f"median from a launch call's start to its kernel's; the step spent {g.launch_cpu_ms:.3g} ms of "
                 "host time in launch calls",
        )
        st.dataframe(pd.DataFrame({"step": range(len(g.step_window_ms)), "window ms": g.step_window_ms,
                                   "busy ms": g.step_busy_ms}), hide_index=True)
    if run is not None and run.ranks:  # several rank files of one job: GPU figures, or the host's for CPU-only jobs
        st.subheader(f"Ranks ({len(run.ranks)})")
        st.dataframe(pd.DataFrame([r.to_dict() for r in run.ranks]), hide_index=True, width="stretch")
    if run is not None and run.validation is not None:
        with st.expander(
            f"Import report: {run.validation.events:,} events, {len(run.validation.skipped)} kinds skipped"
        ):
            st.write({"read": run.validation.read})
            st.dataframe(pd.DataFrame([s.to_dict() for s in run.validation.skipped]), hide_index=True, width="stretch")
            for w in run.validation.warnings:
                st.warning(w)
    if run is not None:
        if not run.trace_path or not Path(run.trace_path).is_file():
            st.warning("This run's trace file is missing, so there is no timeline to draw.")
        else:
            trace_path, title = run.trace_path, f"{run.model.name}: one profiled inference"
else:
    ups = st.file_uploader("PyTorch profiler trace (several files = the ranks of one job)", type=["json", "gz"],
                           key="tl_upload", accept_multiple_files=True,
                           max_upload_size=policy.max_file_bytes() // 2**20)  # the server's own limit, shown
    if ups:
        paths = [str(state.save_upload(u)) for u in ups]
        # the file added last is drawn (the one the person just chose); all of them import together as ranks
        trace_path, title = paths[-1], ups[-1].name + (f" (last of {len(ups)} files)" if len(ups) > 1 else "")
        if st.button("Import as a run", icon=":material/input:", key="tl_import",
                     help="Operators, kernels, transfers and the GPU timeline of this trace (several files: per-rank "
                          "step time and stragglers too), as a saved run that every page can show"):
            # a job in a worker process: a huge or hostile trace costs its own process, not the server
            # (the upload folder is one of the allowed directories, profiler.policy)
            job = job_view.submit(state.job_manager(), ups[0].name, kind="import", paths=paths)
            if job is not None:
                st.session_state["tl_import_job"] = job.id
        import_result()

if trace_path:
    try:
        trace = state.load_trace(trace_path)
    except TraceFormatError as exc:
        st.error(f"The trace could not be read: {exc}")
        trace = None
    if trace is not None and not trace.events:
        st.warning("The trace holds no complete events to draw.")
    elif trace is not None:
        marks = steps(trace)
        step = 0
        if len(marks) > 1:
            step = st.selectbox("Step", list(range(len(marks))), format_func=lambda i: marks[i].name, key="tl_step")
        cats = sorted({e.cat for e in trace.events})
        chosen = st.multiselect("Show", cats, default=default_categories(trace), key="tl_cats")
        events = [e for e in window(trace, step) if e.cat in chosen and not e.name.startswith("ProfilerStep#")]
        st.plotly_chart(charts.timeline_figure(events, title), width="stretch")
        s = summary(trace)
        c1, c2 = st.columns(2)
        c1.dataframe(
            pd.DataFrame(
                [
                    {"category": c, "events": v["count"], "summed ms (nested events overlap)": v["dur_us"] / 1e3}
                    for c, v in sorted(s["categories"].items())
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        if s["memcpy"]:
            c2.dataframe(pd.DataFrame([{"direction": d, "copies": v["calls"], "MB": v["bytes"] / 1e6,
                                        "ms": v["dur_us"] / 1e3} for d, v in s["memcpy"].items()]),
                         hide_index=True, width="stretch")
        else:
            c2.caption("No device memcpy in this trace.")
        st.download_button("Download trace", Path(trace_path).read_bytes(), file_name=Path(trace_path).name,
                           mime="application/gzip", icon=":material/download:")
        st.markdown(
            "Open every saved run in TensorBoard's PyTorch profiler plugin with `python -m profiler tensorboard` "
            "(or the button on the **Runs** page; needs `pip install tensorboard torch-tb-profiler`)."
        )
        with st.expander("Open this trace in Perfetto", icon=":material/timeline:"):
            st.markdown("""
The trace is a Chrome trace (JSON with a `traceEvents` list), which Perfetto reads as it is, gzipped or not:

1. Click **Download trace** above (or take the `*.pt.trace.json.gz` from the run's folder under the runs directory).
2. Open https://ui.perfetto.dev in a browser (it runs locally in the page; the trace is not uploaded).
3. Click **Open trace file** and pick the file, or drag it onto the page.
4. Rows are processes and threads (CPU operators) and CUDA streams (kernels, memcpy); press `W`/`S` to zoom,
   `A`/`D` to pan, and select a range to get a table of the slices in it. Flow arrows link a kernel to its launch.

For per-rank and temporal breakdowns of many traces, HolisticTraceAnalysis (`pip install HolisticTraceAnalysis`)
reads a run's trace: `TraceAnalysis(trace_files={0: "runs/<run id>/<name>.pt.trace.json.gz"})` (name the file: given
the folder, HTA would also read the run's `run.json` as a trace).
""")
