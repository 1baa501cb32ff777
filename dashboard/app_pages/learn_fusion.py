import streamlit as st

from dashboard import charts, lesson_view, lessons, state
from optimizers.results import label
from profiler.analysis import frames as analysis
from profiler.analysis import tables

st.title("Lesson 4 · Compilation and fusion")
st.markdown("""
Eager PyTorch runs one operator at a time: each reads its inputs from memory and writes its output back, and Python
dispatches every call. A compiler sees the whole graph and **fuses** neighbours (a bias add, GELU and the next
multiply become one kernel), removes Python between operators and picks better kernels. Fused attention (**SDPA**,
the `sdpa` pass) replaces the matmul, softmax, matmul chain with one operator; recent `transformers` already use it
by default, which is why the attention here is one `scaled_dot_product_attention` row.

Apply one of these passes to your run's model, then read the **per-operator diff**: which operators got faster,
which disappeared (fused away) and which appeared (the fused ones).
""")
lesson_view.next_lesson(4)
run = lesson_view.my_run("l4")
if run is None:
    st.stop()
tries = {"TorchScript freeze": "torchscript-freeze", "torch.compile": "torch-compile"}
cols = st.columns(len(tries))
for col, (title, name) in zip(cols, tries.items()):
    if col.button(f"Try {title}", key=f"l4_try_{name}", help="torch.compile takes a minute or more to compile on a "
                  "small CPU; the compile time is reported apart from latency"):
        lesson_view.optimize_run("l4_job", run, [name])
lesson_view.follow("l4_job", "Applying and measuring")
mine = [c for c in lessons.results_with(state.my_comparisons(), run.model.name,
                                        lesson_view.passes_in(lessons.FUSION_FAMILIES)) if c.apply is not None]
if not mine:
    st.info("No compilation or fusion results of yours on this model yet: press a **Try** button above.")
    st.stop()
by_id = {c.id: c for c in mine}
chosen = by_id[st.selectbox("Result", list(by_id), format_func=lambda i: label(by_id[i]), key="l4_result")]
comp = chosen.apply.comparison
st.metric("Speedup", f"{chosen.speedup:.2f}x", f"range {chosen.speedup_low:.2f}-{chosen.speedup_high:.2f}x",
          delta_color="off", delta_arrow="off")
st.plotly_chart(charts.op_diff_bar(comp), width="stretch")
table, formats = tables.readable(analysis.op_diff_frame(comp, ["faster", "slower", "new", "removed"]), None,
                                 tables.DIFF_COLUMNS)
st.dataframe(table, hide_index=True, width="stretch", column_config=state.number_columns(formats))
try:
    lesson_view.ask(lessons.biggest_saving(chosen), "l4")
except ValueError as exc:
    st.info(f"No question for this result: {exc}.")
