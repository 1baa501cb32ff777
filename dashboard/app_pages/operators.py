import streamlit as st

from dashboard import charts, state
from profiler.analysis import basis, tables
from profiler.analysis import frames as analysis

st.title("Operators")
state.about("""
Each row is one ATen operator, summed over its calls in one inference. **exec** is its *self* time (not counting
ops it calls), so the column adds up to T_exec; **transfer** is data movement. Times are scaled to the run's median
latency (the profiler slows every operator down; shares are as measured), so they add up to the Overview's figures.
Times show only the digits the run's noise supports; columns with nothing to say for this device are hidden (the CSV
keeps every column). **GFLOP/s** is achieved throughput for ops that do arithmetic we can count. Filter by name or
input shape; the treemap shows the same time by the model's own modules.
""")

run = state.pick_run()
if run is not None:
    b = basis.basis(run)
    frame = analysis.ops_frame_scaled(run)
    c1, c2, c3 = st.columns([2, 2, 1])
    name = c1.text_input("Filter by name", placeholder="addmm", key="op_name")
    shape = c2.text_input("Filter by input shape", placeholder="128, 768", key="op_shape")
    category = c3.selectbox("Kind", ["all", "compute", "transfer"], key="op_kind")
    shown = analysis.filter_ops(frame, name, shape, category)
    whole = "of the trace" if b.trace else f"of the {b.median_ms:.3g} ms median"
    st.caption(f"{len(shown)} of {len(frame)} operators · {shown['time_ms'].sum():.3g} ms {whole} "
               f"({shown['time_ms'].sum() / max(basis.breakdown(run)['wall'], 1e-9):.0%}; all operators: "
               f"{frame['time_ms'].sum():.3g} ms). {b.per_inference_line()}")
    table, formats = tables.readable(shown, run)
    st.dataframe(table, hide_index=True, width="stretch", column_config=state.number_columns(formats))
    st.download_button("Download CSV (ms as shown, FLOPs, bytes)", shown.to_csv(index=False),
                       file_name=f"{run.id}-operators.csv", mime="text/csv", icon=":material/download:")
    k = st.slider("Operators in the chart", 5, 40, 15, key="op_k")
    st.plotly_chart(charts.top_ops_bar(shown, k), width="stretch")
    modules = analysis.module_times_scaled(run)
    if run.graph.nodes and modules["own_ms"].sum() > 0:
        st.plotly_chart(charts.module_treemap(modules), width="stretch")
        st.caption(b.graph_line())
        module = st.text_input("Filter modules by path", placeholder="encoder.layer.0", key="mod_filter")
        table = modules[modules["id"].str.contains(module, regex=False)] if module else modules
        mods, formats = tables.readable(table.sort_values("own_ms", ascending=False)[list(tables.MODULE_COLUMNS)], run,
                                        tables.MODULE_COLUMNS)
        st.dataframe(mods, hide_index=True, width="stretch", column_config=state.number_columns(formats))
    else:
        st.info("This run has no timed graph, so there is no per-module breakdown.")
