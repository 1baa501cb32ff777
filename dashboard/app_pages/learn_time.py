import streamlit as st

from dashboard import charts, lesson_view, lessons
from profiler.analysis import basis
from profiler.analysis import frames as analysis

st.title("Lesson 1 · Where does the time go?")
st.markdown("""
A model is slow in particular places. Profiling measures every operator (matrix multiplies, attention, layer norms,
copies) on every inference, so you can see which few take most of the time, and spend your effort there.

**1.** Profile the small BERT below (or pick one of your runs). **2.** Read the headline numbers, then the top
operators. **3.** Answer the question: the answer comes from *your* run.
""")
lesson_view.next_lesson(1)
run = lesson_view.my_run("l1")
if run is None:
    st.stop()
st.subheader("The headline: Overview")
lat, t, parts = run.latency, run.totals, basis.breakdown(run)
c1, c2, c3 = st.columns(3)
c1.metric("Median latency", f"{lat.median_ms:.3g} ms", f"batch {run.config.batch_size}", delta_color="off",
          delta_arrow="off")
c2.metric("Operator time (T_exec + T_trans)", f"{parts['T_exec'] + parts['T_trans']:.3g} ms",
          "of the median", delta_color="off", delta_arrow="off")
c3.metric("Coverage", f"{100 * t.coverage:.0f}%", "of a profiled inference the operators explain",
          delta_color="off", delta_arrow="off")
st.markdown("""
The **median** is the typical inference, and every time in this lesson is a part of it. **Coverage** is the share of
an inference the operators explain (measured in profiled inferences, where the profiler slows every operator down, so
their times are scaled to the median and the share kept); the rest is Python and framework overhead between them,
which matters most for tiny models like this one.
""")
st.caption(basis.basis(run).per_inference_line())
st.subheader("The detail: Operators")
frame = analysis.ops_frame_scaled(run)
st.plotly_chart(charts.top_ops_bar(frame, k=8), width="stretch")
st.markdown("""
Each bar is one operator's own time per inference (children excluded). In a transformer, the `addmm`/`mm`/`bmm`
rows are the matrix multiplies of the Linear layers and attention; `layer_norm`, `gelu` and `softmax` are the
element-wise work between them.
""")
c1, c2 = st.columns(2)
c1.page_link("app_pages/overview.py", label="Open this run's Overview", icon=":material/dashboard:")
c2.page_link("app_pages/operators.py", label="Open its Operators table", icon=":material/table:")
try:
    lesson_view.ask(lessons.where_time_goes(run), "l1")
except ValueError as exc:
    st.info(f"No question for this run: {exc}.")
