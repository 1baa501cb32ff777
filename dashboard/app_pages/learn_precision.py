import pandas as pd
import streamlit as st

from dashboard import lesson_view, lessons, state
from optimizers.results import summary_row

st.title("Lesson 3 · Precision: fp32, bf16 or int8?")
st.markdown("""
Fewer bits per number means less memory to move and, where the hardware has instructions for it, more operations
per cycle. **bf16** keeps fp32's range with fewer mantissa bits; **int8** maps each tensor to 256 levels with a
scale. Both change the outputs a little, so every result here is checked against the fp32 model on held-out inputs:
a faster model that fails the accuracy check does not count.

Whether a precision is *faster* depends on the CPU: bf16 needs AVX-512 BF16 or AMX to compute natively (otherwise
each operation converts to fp32 and back), and int8 is fast with VNNI dot-product instructions. Measure, do not
assume.
""")
lesson_view.next_lesson(3)
run = lesson_view.my_run("l3")
if run is None:
    st.stop()
features = run.device.cpu_features
st.caption(f"Your run: {run.model.name} on {run.device.kind}: {run.device.name}; CPU features: "
           f"{', '.join(features) or 'unknown'}.")
tries = lessons.precision_tries(run.device.emulated)
if run.device.emulated:
    st.caption(f"This CPU has no {' or '.join(run.device.emulated)} instructions: those run emulated, slower than "
               "fp32, and take longest to measure. Try the others first.")
cols = st.columns(len(tries))
for col, (title, passes) in zip(cols, tries):
    if col.button(f"Try {title}", key=f"l3_try_{passes[0]}", help="Applied to a copy of your run's model, checked "
                  "and measured with your run's config (about a minute on a CPU, once it is your turn)"):
        lesson_view.optimize_run("l3_job", run, passes)
lesson_view.follow("l3_job", "Applying and measuring")
precision = lesson_view.passes_in(lessons.PRECISION_FAMILIES)
mine = lessons.results_with(state.my_comparisons(), run.model.name, precision)
if not mine:
    st.info("No precision results of yours on this model yet: press a **Try** button above.")
    st.stop()
st.dataframe(pd.DataFrame([summary_row(c) for c in mine]).drop(columns=["problem"]), hide_index=True,
             width="stretch")
st.caption("Speedup is the fp32 median over the new median, with the range the two 95% intervals allow.")
lesson_view.ask(lessons.precision_winner(mine, run.model.name, precision, features), "l3")
