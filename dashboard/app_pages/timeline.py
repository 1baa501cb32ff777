from pathlib import Path

import streamlit as st

from dashboard import charts, state
from profiler import TraceFormatError
from profiler.traces import steps, summary, window

st.title("Timeline")
state.about("""
One recorded inference as a timeline: each bar is an operator (and, on a GPU, a kernel or memcpy) placed at its start
time, one row per thread or CUDA stream. Nested operators overlap their parents. The raw trace is the file
`torch.profiler` wrote; download it to dig deeper in TensorBoard or Perfetto.
""")
run = state.pick_run()
if run is not None:
    if not run.trace_path or not Path(run.trace_path).is_file():
        st.warning("This run's trace file is missing, so there is no timeline to draw.")
    else:
        try:
            trace = state.load_trace(run.trace_path)
        except TraceFormatError as exc:
            st.error(f"The trace could not be read: {exc}")
            trace = None
        if trace is not None:
            marks = steps(trace)
            step = 0
            if len(marks) > 1:
                step = st.selectbox("Step", list(range(len(marks))), format_func=lambda i: marks[i].name)
            cats = sorted({e.cat for e in trace.events})
            default = [c for c in cats if c not in ("python_function",)]
            chosen = st.multiselect("Show", cats, default=default, key="tl_cats")
            events = [e for e in window(trace, step) if e.cat in chosen and not e.name.startswith("ProfilerStep#")]
            st.plotly_chart(charts.timeline_figure(events, f"{run.model.name}: one profiled inference"), width="stretch")
            s = summary(trace)
            st.caption(f"{s['events']} events in the trace; " + ", ".join(
                f"{c}: {v['count']} ({v['dur_us'] / 1e3:.3g} ms)" for c, v in sorted(s["categories"].items())))
            st.download_button("Download trace", Path(run.trace_path).read_bytes(), file_name=Path(run.trace_path).name,
                               mime="application/gzip", icon=":material/download:")
            st.markdown("Open it with `tensorboard --logdir runs` (needs `pip install torch-tb-profiler`; every run "
                        "directory is a TensorBoard run) or drop the file on https://ui.perfetto.dev.")
