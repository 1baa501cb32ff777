import streamlit as st

from dashboard import charts, state
from profiler import OpLensError
from profiler.analysis import basis
from profiler.analysis import frames as analysis
from profiler.viewers import model_explorer as graph_viewer

st.title("Graph")
state.about("""
The model's computation graph G = (V, E), captured with `torch.export` (or fx, or the module tree when neither can
trace it). Each dot is an operator node, left to right in execution depth; its size and colour show its own measured
T_exec. Orange edges carry data moved by copies (T_trans). Collapse to module level to see a large model whole, then
expand the part that matters; click a node or pick it below for its details.
""")
run = state.pick_run()
if run is not None:
    g = run.graph
    if not g.nodes:
        st.info(f"This run has no graph ({g.note or g.method}).")
    else:
        b = basis.basis(run)
        st.caption(f"Captured with **{g.method}**: {len(g.nodes)} nodes, {g.timed_nodes} with measured time. "
                   + b.graph_line() + (f" Note: {g.note}" if g.note else ""))
        explorer = state.model_explorer(run)
        if not graph_viewer.available():
            st.caption("For a layered viewer made for model graphs: `pip install ai-edge-model-explorer`.")
        elif explorer is None and st.button("Open in Model Explorer", icon=":material/account_tree:",
                                            key="model_explorer", help="Google's Model Explorer on localhost: "
                                            "module layers collapsible, per-node exec/transfer ms, GFLOP and "
                                            "roofline bound as overlays (python -m profiler explore RUN_ID)"):
            try:
                with st.spinner("Starting Model Explorer"):
                    explorer = state.model_explorer(run, start=True)
            except OpLensError as exc:
                st.error(str(exc))
        if explorer is not None:
            st.markdown(f"Model Explorer is serving this run: [open it]({explorer.url}) (pick an overlay under "
                        "*node data* to colour the nodes)")
        levels = analysis.module_depths(run)
        options = ["every node"] + [f"modules, depth {d}" for d in range(1, levels + 1)]
        choice = st.select_slider("Detail", options, value=options[analysis.default_depth(run) or 0], key="graph_depth")
        depth = None if choice == "every node" else int(choice.rsplit(" ", 1)[-1])
        view = analysis.collapse_scaled(run, depth)
        selected = st.session_state.get("graph_node")
        event = st.plotly_chart(charts.graph_figure(view, selected), width="stretch", on_select="rerun",
                                selection_mode="points", key="graph_chart")
        points = (event or {}).get("selection", {}).get("points", []) if event else []
        ids = [n["id"] for n in view.nodes]
        for p in points:
            picked = p.get("customdata") or (ids[p["point_index"]] if p.get("point_index", -1) < len(ids) else None)
            if picked in ids:
                selected = picked
        by_time = sorted(view.nodes, key=lambda n: n["exec_ms"] + n["trans_ms"], reverse=True)
        order = [n["id"] for n in by_time]
        pick = st.selectbox(
            "Node details (slowest first)",
            order,
            index=order.index(selected) if selected in order else 0,
            key="graph_pick",
        )
        st.session_state["graph_node"] = pick
        node = next(n for n in view.nodes if n["id"] == pick)
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("T_exec", f"{node['exec_ms']:.3g} ms", help="scaled to the median, as every time on this page")
        c2.metric("T_trans", f"{node['trans_ms']:.3g} ms", help="scaled to the median, as every time on this page")
        c3.metric("FLOPs", f"{node['flops']:.3g}")
        c4.metric("Nodes inside", node["count"])
        preds = [e["source"] for e in view.edges if e["target"] == pick]
        succs = [e["target"] for e in view.edges if e["source"] == pick]
        st.table({"": ["op", "module", "output", "inputs from", "outputs to"],
                  "value": [node["op"], node.get("module") or "-",
                            f"{node.get('output_shape') or '-'} {node.get('output_dtype') or ''}",
                            ", ".join(preds) or "-", ", ".join(succs) or "-"]})
