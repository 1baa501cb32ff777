"""Caches and the current selection, shared by the pages. Jobs: st.cache_resource; runs: st.cache_data keyed by the
file's mtime so a rename or a new run is seen at once; the selection lives in st.session_state only."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from profiler import RunStoreError, policy, store
from profiler.jobs import JobManager
from profiler.schema import ProfileRun
from profiler.traces.read import Trace, read_trace

RUN_KEY = "run_id"
LINK_KEY = "deep_link_run"  # the `?run=` value already followed, so picking another run is not undone


def available_devices() -> list[str]:
    """The device choices; without an NVIDIA driver that is just the CPU, known without importing torch."""
    if not os.path.exists("/proc/driver/nvidia/gpus") and not os.path.exists("/dev/nvidiactl"):
        return ["cpu"]
    from profiler.devices import available_devices as probe

    return probe()


def save_upload(upload) -> Path:
    """Store an uploaded file under a folder named by its content hash: two participants uploading `model.py` at
    the same time never overwrite each other, and the same file uploaded twice is stored once. Its name is
    sanitised and its size checked (profiler.policy): PolicyError in one line otherwise."""
    import hashlib

    data = upload.getbuffer()
    if len(data) > policy.max_file_bytes():
        raise policy.PolicyError(f"{upload.name}: {len(data) / 2**20:.0f} MiB is over this server's limit of "
                                 f"{policy.max_file_bytes() / 2**20:.0f} MiB")
    folder = policy.UPLOADS / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / policy.safe_upload_name(upload.name)
    if not target.exists():
        target.write_bytes(data)
    return target


def peaks_from_upload(upload, gpu_name: str):
    """Measured peaks from an uploaded JSON (profiler.devices.peaks_file's formats); OpLensError in one line."""
    from profiler import devices

    return devices.peaks_file(save_upload(upload), gpu_name)


def unsafe_server() -> str:
    """Why this server is not strict, or '': started outside the OpLens folder, .streamlit/config.toml (127.0.0.1,
    XSRF protection) was not read and Streamlit would listen on every interface. A flag given on purpose counts."""
    from streamlit import config

    if config.is_manually_set("server.address"):
        return ""
    return ("OpLens runs models, so it serves only where it is told to: start it from its own folder (`streamlit run "
            "dashboard/app.py` reads .streamlit/config.toml: 127.0.0.1, XSRF protection, upload limit) or name an "
            "address on purpose with --server.address")


def runs_dir() -> str:
    return str(store.runs_dir())


@st.cache_resource(show_spinner=False)
def _job_manager(root: str) -> JobManager:
    return JobManager(root)


def job_manager() -> JobManager:
    """The server's jobs for the current runs dir: one manager (one queue) shared by every session."""
    return _job_manager(runs_dir())


def participant() -> str:
    """The session's display name (set by the name picker), or "" before one is picked."""
    return str(st.session_state.get("participant") or "")


def instructor() -> bool:
    return st.session_state.get("instructor") is True


EVERYONE_KEY = "show_everyone"  # session_state: the sidebar's "Show everyone's runs" toggle


def sees_everyone() -> bool:
    """The instructor always does; a participant when the toggle is on; a session with no name yet sees all."""
    return instructor() or bool(st.session_state.get(EVERYONE_KEY)) or not participant()


def visible(items: list, name: str, everyone: bool) -> list:
    """The runs or comparisons a session sees: its own (tagged with its name), or all of them when `everyone`."""
    if everyone:
        return list(items)
    return [item for item in items if getattr(item, "participant", "") == name]


@st.cache_resource
def _tensorboards() -> dict:
    return {}  # runs dir -> profiler.viewers.tensorboard.TensorBoard, one per server process


def tensorboard(start: bool = False):
    """The TensorBoard serving this runs dir (started in the background when `start`), or None."""
    from profiler.viewers import tensorboard as tb

    running = _tensorboards()
    root = runs_dir()
    current = running.get(root)
    if current is not None and current.process.poll() is not None:
        running.pop(root)
        current = None
    if current is None and start:
        current = running[root] = tb.start(root, tb.free_port())
    return current


@st.cache_resource
def _explorers() -> dict:
    return {}  # run id -> profiler.viewers.model_explorer.Viewer; one at a time per server process


def model_explorer(run: ProfileRun, start: bool = False):
    """The Model Explorer serving this run's graph (started in the background when `start`, stopping any other),
    or None."""
    from profiler.viewers import model_explorer as graph_viewer

    running = _explorers()
    current = running.get(run.id)
    if current is not None and current.process.poll() is not None:
        running.pop(run.id)
        current = None
    if current is None and start:
        for other in list(running):
            running.pop(other).stop()
        from profiler.measure import peaks as peaks_mod  # torch: only when a viewer starts

        current = running[run.id] = graph_viewer.serve_run(run, peaks_mod.for_run(run, measure_missing=False))
    return current


@st.cache_data(max_entries=64, show_spinner=False)
def _load_run(run_id: str, root: str, mtime: float) -> ProfileRun:
    return store.load(run_id, root)


def load_run(run_id: str) -> ProfileRun:
    root = runs_dir()
    f = Path(root) / run_id / store.RUN_FILE
    try:
        mtime = f.stat().st_mtime
    except OSError:
        raise RunStoreError(f"run '{run_id}' no longer exists") from None
    return _load_run(run_id, root, mtime)


@st.cache_data(max_entries=8, show_spinner=False)
def _read_trace(path: str, mtime: float) -> Trace:
    return read_trace(path)


def load_trace(path: str) -> Trace:
    return _read_trace(path, os.path.getmtime(path))


def list_runs():
    return store.list_runs(runs_dir())


def scan_runs() -> store.RunListing:
    """The readable runs and a note on any folder skipped (a save killed halfway)."""
    return store.scan_runs(runs_dir())


def list_comparisons():
    """Saved applies and searches, newest first."""
    return store.list_comparisons(runs_dir())


def run_label(summary) -> str:
    name = summary.label or summary.model
    when = summary.created[5:16].replace("T", " ")
    return f"{name} · {summary.device.split(':')[0]} · {summary.median_ms:.3g} ms · {when}"


def follow_deep_link() -> None:
    """`?run=RUN_ID` in the address makes that run the session's current one, on whichever page it opens."""
    link = st.query_params.get("run")
    if link and link != st.session_state.get(LINK_KEY):
        st.session_state[LINK_KEY] = st.session_state[RUN_KEY] = link


def my_runs(runs: list | None = None):
    """The runs this session sees (of `runs`, default every readable one): its participant's own, or everyone's
    (instructor, or the toggle)."""
    return visible(list_runs() if runs is None else runs, participant(), sees_everyone())


def my_comparisons():
    """The saved applies and searches this session sees, newest first (unreadable ones to all)."""
    saved = list_comparisons()
    good = visible([c for c in saved if not c.error], participant(), sees_everyone())
    return good + [c for c in saved if c.error]


def pick_run(key: str = "pick_run", label: str = "Run") -> ProfileRun | None:
    """Select box over this session's runs bound to the session's current run (a deep-linked or just-profiled run is
    offered even when it is someone else's); shows guidance when there are none."""
    follow_deep_link()
    current = st.session_state.get(RUN_KEY)
    everything = list_runs()  # readable runs only: a damaged folder is the Runs page's note
    runs = my_runs(everything)
    runs += [r for r in everything if r.id == current and r not in runs]
    if not runs:
        mine = " of yours" if everything else ""
        st.info(f"No saved runs{mine} yet. Profile a model on the **Profile** page first (the tiny models take "
                "seconds).")
        st.page_link("app_pages/profile.py", label="Go to Profile", icon=":material/speed:")
        return None
    ids = [r.id for r in runs]
    if current and current not in ids and current == st.query_params.get("run"):
        st.warning(f"No run '{current[:80]}' here (deleted, or the link is mistyped): showing another.")
    index = ids.index(current) if current in ids else 0
    labels = {r.id: run_label(r) for r in runs}
    chosen = st.selectbox(label, ids, index=index, format_func=labels.get, key=key)
    st.session_state[RUN_KEY] = st.session_state[LINK_KEY] = chosen
    st.query_params["run"] = chosen  # the address is a link to this run
    try:
        run = load_run(chosen)
    except RunStoreError as exc:
        st.error(str(exc))
        return None
    if run.load is not None and run.load.busy:  # every page that shows this run's figures says so
        st.warning(run.load.text[:1].upper() + run.load.text[1:], icon=":material/speed:")
    return run


def about(text: str) -> None:
    with st.expander("About / how to read this"):
        st.markdown(text)


def number_columns(formats: dict[str, str]) -> dict:
    """Streamlit column configs for the printf formats profiler.analysis.tables chose (text columns left as they
    are)."""
    out = {}
    for header, fmt in formats.items():
        if fmt == "percent":
            out[header] = st.column_config.ProgressColumn(header, format="percent", min_value=0, max_value=1)
        elif fmt:
            out[header] = st.column_config.NumberColumn(header, format=fmt)
    return out
