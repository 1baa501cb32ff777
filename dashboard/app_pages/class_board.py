import pandas as pd
import streamlit as st

from dashboard import lessons, participants, state
from optimizers.results import class_leaderboard

st.title("Class leaderboard")
if not state.instructor():
    if participants.instructor_token_set():
        st.info("For the instructor: enter the instructor's token in the sidebar to see the class's results.")
    else:  # no token box is shown: asking for one would send the instructor looking for it
        st.info(f"For the instructor: this server has no instructor token. Start it with "
                f"`{participants.TOKEN_ENV}=<a secret> streamlit run dashboard/app.py`, then enter the secret in the "
                "sidebar to see the class's results.")
    st.stop()
state.about("""
Each participant's best **verified** speedup on the model: only applies and searches whose outputs passed the
accuracy check count. The range is what the two runs' 95% intervals allow; a range that reaches below 1.0x is not a
clear win.
""")
saved = state.list_comparisons()
models = sorted({c.model for c in saved if not c.error} | {lessons.LESSON_MODEL})
model = st.selectbox("Model", models, index=models.index(lessons.LESSON_MODEL), key="class_model")
rows = class_leaderboard(saved, model)
if not rows:
    st.info(f"No accuracy-passing results on {model} from a named participant yet.")
    st.stop()
st.dataframe(pd.DataFrame([{"participant": r.participant, "best speedup": r.speedup,
                            "range": f"{r.speedup_low:.2f}-{r.speedup_high:.2f}x", "passes": " + ".join(r.passes),
                            "results counted": r.tried, "comparison": r.comparison_id} for r in rows]),
             hide_index=True, width="stretch",
             column_config={"best speedup": st.column_config.NumberColumn(format="%.2fx")})
