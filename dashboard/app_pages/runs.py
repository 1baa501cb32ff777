import json

import pandas as pd
import streamlit as st

from dashboard import charts, comparison_view, state
from optimizers.results import label, summary_row
from profiler import OpLensError, RunStoreError, store
from profiler.analysis import frames as analysis
from profiler.analysis import tables
from profiler.viewers import html_report as report

st.title("Runs")
state.about("""
Every profile is saved under the runs directory. Rename a run to remember what it was, delete what you no longer need,
and compare two runs: the speedup is the ratio of their median latencies, with the range their 95% intervals allow;
the per-operator diff shows what got faster, slower, appeared or disappeared. **Comparisons** lists every apply and
search made on the Optimize page or with `python -m optimizers`; pick one to see it again.
""")
listing = state.scan_runs()
runs = state.my_runs(listing.runs)
if listing.note:
    st.warning(listing.note, icon=":material/report:")
if not runs:
    st.info("No saved runs yet. Profile a model on the **Profile** page first.")
    st.page_link("app_pages/profile.py", label="Go to Profile", icon=":material/play_circle:")
else:
    table = pd.DataFrame([{"id": r.id, "label": r.label, "model": r.model, "device": r.device, "created": r.created,
                           "median ms": r.median_ms, "batch": r.batch_size, "seq/img": r.seq_len}
                          for r in runs])
    st.dataframe(table, hide_index=True, width="stretch")
    labels = {r.id: state.run_label(r) for r in runs}
    st.subheader("Manage a run")
    target = st.selectbox("Run", [r.id for r in runs], format_func=labels.get, key="manage_run")
    c1, c2, c3 = st.columns([3, 1, 1])
    new_label = c1.text_input("New label", key="new_label", placeholder="baseline fp32")
    if c2.button("Rename", key="rename"):
        try:
            store.rename(target, new_label, state.runs_dir())
            st.toast(f"Renamed to '{new_label}'")
            st.rerun()
        except RunStoreError as exc:
            st.error(str(exc))
    confirm = c3.checkbox("Really delete", key="confirm_delete")
    if c3.button("Delete", key="delete", type="secondary", disabled=not confirm):
        try:
            store.delete(target, state.runs_dir())
            st.session_state.pop(state.RUN_KEY, None)
            st.toast("Deleted")
            st.rerun()
        except RunStoreError as exc:
            st.error(str(exc))
    try:
        payload = json.dumps(store.load(target, state.runs_dir()).to_dict(), indent=1)
        st.download_button("Download run.json", payload, file_name=f"{target}.json", mime="application/json",
                           icon=":material/download:")
    except RunStoreError as exc:
        st.error(str(exc))

    c1, c2 = st.columns(2)
    try:
        html_one = report.build(state.load_run(target))
        c1.download_button("Download HTML report", html_one, file_name=f"{target}.html", mime="text/html",
                           icon=":material/description:", key="report_one",
                           help="One self-contained file: summary, top operators, GPU timeline, charts")
    except RunStoreError as exc:
        c1.error(str(exc))
    board = state.tensorboard()
    if board is None and c2.button("Open in TensorBoard", icon=":material/insights:", key="tensorboard",
                                   help="TensorBoard with the PyTorch profiler plugin on the runs directory, on "
                                        "localhost (python -m profiler tensorboard does the same)"):
        try:
            with st.spinner("Starting TensorBoard"):
                board = state.tensorboard(start=True)
        except OpLensError as exc:
            c2.error(str(exc))
    if board is not None:
        c2.markdown(f"TensorBoard is running: [{board.url}#pytorch_profiler]({board.url}#pytorch_profiler)")

    st.subheader("Compare two runs")
    if len(runs) < 2:
        st.info("Save at least two runs to compare them.")
    else:
        c1, c2 = st.columns(2)
        base_id = c1.selectbox("Base", [r.id for r in runs], index=1, format_func=labels.get, key="cmp_base")
        new_id = c2.selectbox("New", [r.id for r in runs], index=0, format_func=labels.get, key="cmp_new")
        base, new = state.load_run(base_id), state.load_run(new_id)
        comp = analysis.compare(base, new)
        word = "faster" if comp.speedup >= 1 else "slower"
        st.metric(
            "Speedup (base / new median)",
            f"{comp.speedup:.2f}x",
            f"{word}; range {comp.speedup_low:.2f}-{comp.speedup_high:.2f}x",
            delta_color="off",
            delta_arrow="off",
        )
        if not comp.same_setup:
            st.warning("These runs differ in setup, so the ratio mixes causes: " + "; ".join(comp.setup_differences))
        st.plotly_chart(charts.speedup_figure(comp, "base", "new"), width="stretch")
        st.plotly_chart(charts.op_diff_bar(comp), width="stretch")
        st.caption(analysis.change_line(comp))
        status = st.multiselect("Show", ["faster", "slower", "new", "removed", "same"],
                                default=["faster", "slower", "new", "removed"], key="cmp_status")
        table, formats = tables.readable(analysis.op_diff_frame(comp, status), base, tables.DIFF_COLUMNS)
        st.dataframe(table, hide_index=True, width="stretch", column_config=state.number_columns(formats))
        if comp.modules:
            st.markdown("**Modules** (own time per inference), largest change first")
            st.dataframe(pd.DataFrame([{"module": m.name, "before (ms)": m.base, "after (ms)": m.new,
                                        "change (ms)": m.delta} for m in comp.modules]), hide_index=True,
                         width="stretch")
        if comp.kernels:
            st.markdown("**Kernels by operator**, largest change first: each operator's total, then its kernels")
            table, formats = tables.readable(analysis.kernel_diff_frame(comp), base, tables.KERNEL_DIFF_COLUMNS)
            st.dataframe(table, hide_index=True, width="stretch", column_config=state.number_columns(formats))
        if comp.transfers:
            st.markdown("**Transfers** by direction")
            st.dataframe(pd.DataFrame([{"direction": t.direction, "before (ms)": t.base_ms, "after (ms)": t.new_ms,
                                        "change (ms)": t.delta_ms, "bytes before": t.base_bytes,
                                        "bytes after": t.new_bytes} for t in comp.transfers]), hide_index=True,
                         width="stretch")
        if comp.gpu:
            st.markdown("**GPU timeline** per step")
            st.dataframe(pd.DataFrame([{"field": m.name, "before": m.base, "after": m.new, "change": m.delta}
                                       for m in comp.gpu]), hide_index=True, width="stretch")
        st.download_button("Download the comparison as HTML", report.build(base, new),
                           file_name=f"{base_id}_vs_{new_id}.html", mime="text/html", icon=":material/description:",
                           key="report_two")

st.subheader("Comparisons")
saved = state.my_comparisons()
if not saved:
    st.caption("No saved comparisons yet: every apply and search on the **Optimize** page (or with "
               "`python -m optimizers apply` / `search`) is kept and listed here.")
else:
    st.dataframe(pd.DataFrame([summary_row(c) for c in saved]), hide_index=True, width="stretch")
    by_id = {c.id: c for c in saved}
    shown = st.selectbox("Show a comparison", list(by_id), key="saved_comparison",
                         format_func=lambda i: label(by_id[i]))
    comparison_view.show(by_id[shown])
