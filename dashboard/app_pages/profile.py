import streamlit as st

from dashboard import job_view, sources, state
from profiler.schema import ProfileConfig

st.title("Profile a model")
state.about("""
Pick a model and press **Profile**. OpLens times it (warm-up, then repeats until both a minimum count and a minimum
time are met), records every operator with `torch.profiler`, captures the computation graph and times each node.
The run is saved, and every other page reads it. Tiny models take seconds; BERT-base at batch 8 about a minute on a CPU.
Only one measurement runs at a time on this machine: if another person's run is going, yours waits its turn.
""")

choice = sources.pick_model()
if choice.problem:
    st.error(choice.problem)
spec, arch, kind = choice.spec, choice.arch, choice.kind
default_batch, default_seq = choice.default_batch, choice.default_seq

with st.form("profile_form"):
    c1, c2, c3 = st.columns(3)
    devices = state.available_devices()
    device = c1.selectbox("Device", devices, help="Only devices present on this machine are listed")
    # 0 passes no size on: a factory keeps its own default, and the run records the size the inputs really have
    batch = c2.number_input("Batch size", 0, 4096, int(default_batch), help="0 keeps the model's default")
    seq_label = "Image size (pixels)" if kind == "image" else "Sequence length (tokens)"
    seq = c3.number_input(seq_label, 0, 65536, int(default_seq or 0), help="0 keeps the model's default")
    c4, c5, c6 = st.columns(3)
    warmup = c4.number_input("Warm-up iterations", 0, 100, 3)
    repeats = c5.number_input("Minimum timed iterations", 1, 1000, 10)
    min_time = c6.number_input("Minimum timed seconds", 0.0, 600.0, 1.0)
    c7, c8 = st.columns(2)
    dtype = c7.selectbox("Precision", ["float32", "bfloat16", "float16"])
    graph = c8.checkbox("Capture and time the graph", True)
    go = st.form_submit_button("Profile", type="primary", icon=":material/play_arrow:")

jobs = state.job_manager()
if go:
    if not spec:
        st.error("Choose a model first: pick a sample, upload a file, or type a path or hub id.")
    elif not choice.problem:
        config = ProfileConfig(device=device, batch_size=int(batch), seq_len=int(seq), warmup=int(warmup),
                               repeats=int(repeats), min_time_s=float(min_time), dtype=dtype, graph=graph)
        job = job_view.submit(jobs, spec, config, state.runs_dir(), arch=arch)
        if job is not None:
            st.session_state["job_id"] = job.id


def show_done(job) -> None:
    st.success(f"Done: {job.spec} profiled and saved as run `{job.run_id}`.")
    st.session_state[state.RUN_KEY] = job.run_id
    c1, c2, c3 = st.columns(3)
    c1.page_link("app_pages/overview.py", label="Open Overview", icon=":material/dashboard:")
    c2.page_link("app_pages/operators.py", label="Open Operators", icon=":material/table:")
    c3.page_link("app_pages/graph.py", label="Open Graph", icon=":material/account_tree:")


@st.fragment(run_every=0.5)
def job_panel():
    job_view.panel(jobs, "job_id", "profile", "Profiling {spec} ...", "Profiling", show_done)


job_panel()
