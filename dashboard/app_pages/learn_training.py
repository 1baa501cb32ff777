import pandas as pd
import streamlit as st

from dashboard import lesson_view, lessons

st.title("Lesson 6 · Training: where does a step go?")
st.markdown("""
A training step does more than inference: it waits for the next **batch** (the input pipeline), runs the
**forward** pass, the **backward** pass (gradients for every layer: about twice the forward's work) and the
**optimizer** step (updating every weight, and for Adam two more tensors per weight). Memory has more in it too:
weights, their gradients, the optimizer's state and the activations kept for backward.

Train the lesson's model for a few steps (each step is one profiler step; warm-up steps are not timed), then read
the step by phase.
""")
lesson_view.next_lesson(6)
if st.button(f"Train {lessons.LESSON_MODEL} for 5 steps", key="l6_train", icon=":material/play_arrow:",
             help="Each participant's training waits its turn on the machine, as profiles do"):
    lesson_view.submit("l6_job", lessons.LESSON_MODEL, lesson_view.LESSON_CONFIG, kind="train",
                       train={"steps": 5, "warmup": 2, "batch_size": 8})
lesson_view.follow("l6_job", f"Training {lessons.LESSON_MODEL}")
runs = [r for r in lesson_view.runs_of(lessons.LESSON_MODEL) if r.training is not None]
if not runs:
    st.info(f"Train {lessons.LESSON_MODEL} first (the button above), or pick a training run on the Train page.")
    st.stop()
run = runs[0]
t = run.training
st.caption(f"Your run {run.id}: {t.wall.n} steps of batch {t.config.batch_size}, median {t.wall.median:.3g} ms")
st.bar_chart(pd.DataFrame({"ms": [t.phases.get(p, 0.0) for p in lessons.TRAIN_PHASES]},
                          index=list(lessons.TRAIN_PHASES)), horizontal=True, x_label="time per step (ms)")
if t.memory is not None and t.memory.peak_bytes:
    st.caption(f"Memory peaks at {t.memory.peak_bytes / 2**20:,.1f} MiB during {t.memory.peak_phase}: " + ", ".join(
        f"{k} {v / 2**20:,.1f} MiB" for k, v in sorted(t.memory.peak_by_category.items(), key=lambda x: -x[1])
        if v > 2**16))
lesson_view.ask(lessons.training_step(run), "l6")
