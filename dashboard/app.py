"""OpLens dashboard: `streamlit run dashboard/app.py`. Navigation only; each page lives in app_pages/."""
import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so `streamlit run dashboard/app.py` works from a fresh clone without installing
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="OpLens", page_icon=":material/speed:", layout="wide")

from dashboard.state import unsafe_server  # noqa: E402  after the sys.path line above

if unsafe_server():
    st.error(unsafe_server())
    st.stop()

pages = {
    "Measure": [
        st.Page("app_pages/profile.py", title="Profile", icon=":material/play_circle:", default=True),
        st.Page("app_pages/runs.py", title="Runs", icon=":material/history:"),
        st.Page("app_pages/queue.py", title="Queue", icon=":material/queue:"),
    ],
    "Understand": [
        st.Page("app_pages/overview.py", title="Overview", icon=":material/dashboard:"),
        st.Page("app_pages/operators.py", title="Operators", icon=":material/table:"),
        st.Page("app_pages/graph.py", title="Graph", icon=":material/account_tree:"),
        st.Page("app_pages/timeline.py", title="Timeline", icon=":material/timeline:"),
        st.Page("app_pages/why_slow.py", title="Why slow?", icon=":material/speed:"),
    ],
    "Improve": [st.Page("app_pages/optimize.py", title="Optimize", icon=":material/bolt:"),
                st.Page("app_pages/generate.py", title="Generate", icon=":material/text_fields:"),
                st.Page("app_pages/train.py", title="Train", icon=":material/model_training:")],
    "Machine": [st.Page("app_pages/system.py", title="System", icon=":material/monitor_heart:")],
}
# workshop: who this session is, the lessons, the instructor's class view; `?run=` opens a run on any page
from dashboard import lesson_view, participants, state  # noqa: E402  (after the sys.path line above)

participants.sidebar()
state.follow_deep_link()
pages["Learn"] = [st.Page(path, title=title, icon=":material/school:")
                  for path, title in zip(lesson_view.LESSONS, lesson_view.TITLES)]
pages["Learn"].append(st.Page("app_pages/class_board.py", title="Class leaderboard", icon=":material/leaderboard:"))
# expanded: a participant sees every page, System and the six lessons included, without a "View more" fold
st.navigation(pages, expanded=True).run()


@st.cache_resource(show_spinner=False)
def _warm_imports():
    """Import the heavy libraries in the background once per server, after the first page is drawn, so the first
    page needs no torch and later pages find it loaded."""
    import threading

    def work():
        import dashboard.charts  # noqa: F401  plotly
        import profiler.analysis.frames  # noqa: F401  pandas
        import profiler.measure.session  # noqa: F401  torch

    threading.Thread(target=work, daemon=True, name="oplens-warm-imports").start()
    return True


_warm_imports()
