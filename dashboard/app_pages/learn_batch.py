import pandas as pd
import streamlit as st

from dashboard import charts, lesson_view, lessons
from profiler.schema import ProfileConfig, Sweep

st.title("Lesson 5 · Batch size, throughput and latency")
st.markdown("""
A bigger batch gives each operator more work per call, so fixed costs (Python, dispatch, reading the weights) are
shared between more inputs: **throughput** (inputs per second) rises. But every input in the batch waits for the
whole batch, so **latency** rises too. Past some size the hardware is busy and throughput stops growing: that knee is
usually the batch size to serve with, unless a latency limit says smaller.

Measure the same model at several batch sizes (a small sweep: each size is one profile), then read the curve.
""")
lesson_view.next_lesson(5)
SIZES = [1, 2, 4, 8]
if st.button(f"Measure {lessons.LESSON_MODEL} at batch {', '.join(map(str, SIZES))}", key="l5_sweep",
             icon=":material/play_arrow:", help="One profile per batch size, one after another"):
    lesson_view.submit_series("l5_job", [
        {"spec": lessons.LESSON_MODEL, "config": ProfileConfig.from_dict({**lesson_view.LESSON_CONFIG.to_dict(),
                                                                          "batch_size": b})} for b in SIZES])
lesson_view.follow("l5_job", "Measuring batch sizes")
points = lessons.batch_series(lesson_view.runs_of(lessons.LESSON_MODEL), lessons.LESSON_MODEL)
if len(points) < 2:
    st.info(f"Measure at least two batch sizes of {lessons.LESSON_MODEL} (the button above does four).")
    st.stop()
st.plotly_chart(charts.sweep_figure(Sweep(id=f"of your {lessons.LESSON_MODEL} runs", created="",
                                          model=lessons.LESSON_MODEL, points=points)), width="stretch")
st.dataframe(pd.DataFrame([{"batch": p.batch_size, "median ms": p.median_ms, "inputs/s": p.throughput_per_s,
                            "ms per input": p.median_ms / p.batch_size} for p in points]), hide_index=True,
             width="stretch")
lesson_view.ask(lessons.best_batch(points), "l5")
