import streamlit as st

from dashboard import charts, lesson_view, lessons, state
from profiler import OpLensError
from profiler.analysis import basis

st.title("Lesson 2 · Compute vs data movement")
st.markdown("""
Time goes to two kinds of work: **T_exec**, operators computing, and **T_trans**, data moving. On a GPU, T_trans is
the copies between host and device memory (H2D, D2H) over PCIe; on a CPU-only machine it is host-side copies,
dtype conversions and layout changes. Moving data does no useful maths, so a large T_trans is time to win back
(keep inputs on the device, pin memory, avoid needless conversions).
""")
lesson_view.next_lesson(2)
run = lesson_view.my_run("l2")
if run is None:
    st.stop()
st.plotly_chart(charts.breakdown_bar(basis.breakdown(run)), width="stretch")
b = basis.basis(run)
st.caption(f"T_trans here is {run.totals.trans_label or 'data movement'}. {b.per_inference_line()}")
if run.transfers:
    st.dataframe([{"direction": x.direction, "what": x.label, "calls": x.calls, "bytes": x.bytes,
                   "ms per inference (scaled to the median)" if b.scaled else "ms per inference": b.ops(x.time_ms)}
                  for x in run.transfers], hide_index=True, width="stretch")
lesson_view.ask(lessons.compute_vs_movement(run), "l2")

st.subheader("The same on a GPU")
if run.device.kind == "cuda":
    st.markdown("Your run is on a GPU: its T_trans above is real host-device copies.")
else:
    st.markdown(f"""
This machine has no GPU, so here is a trace recorded elsewhere: {lesson_view.GPU_EXAMPLE_TEXT}, imported
like any trace. Compare its data-movement share with yours.
""")
    try:
        gpu = lesson_view.gpu_example()
    except OpLensError as exc:
        st.error(f"The GPU example could not be read: {exc}")
    else:
        st.plotly_chart(charts.breakdown_bar(basis.breakdown(gpu), trace=True), width="stretch")
        st.metric("Data movement share on the GPU", f"{lessons.movement_share(gpu):.1%}",
                  f"yours: {lessons.movement_share(run):.1%}", delta_color="off", delta_arrow="off")
        st.caption(f"{gpu.device.name}; T_trans is {gpu.totals.trans_label or 'host-device copies'}.")
state.about("T = ΣT_exec + ΣT_trans; what neither explains is overhead or idle time (see Overview).")
