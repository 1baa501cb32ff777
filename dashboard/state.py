"""Caches and the current selection, shared by the pages. Jobs: st.cache_resource; runs: st.cache_data keyed by the
file's mtime so a rename or a new run is seen at once; the selection lives in st.session_state only."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from profiler import RunStoreError, store
from profiler.schema import ProfileRun
from profiler.traces import Trace, read_trace

from .jobs import JobManager

RUN_KEY = "run_id"


def available_devices() -> list[str]:
    """The device choices; without an NVIDIA driver that is just the CPU, known without importing torch."""
    if not os.path.exists("/proc/driver/nvidia/gpus") and not os.path.exists("/dev/nvidiactl"):
        return ["cpu"]
    from profiler.devices import available_devices as probe

    return probe()


def save_upload(upload) -> Path:
    """Store an uploaded file under a folder named by its content hash: two participants uploading `model.py` at
    the same time never overwrite each other, and the same file uploaded twice is stored once."""
    import hashlib
    import tempfile

    data = upload.getbuffer()
    folder = Path(tempfile.gettempdir()) / "oplens-uploads" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(upload.name).name
    if not target.exists():
        target.write_bytes(data)
    return target


def runs_dir() -> str:
    return str(store.runs_dir())


@st.cache_resource
def job_manager() -> JobManager:
    return JobManager()


@st.cache_resource
def _tensorboards() -> dict:
    return {}  # runs dir -> profiler.tensorboard.TensorBoard, one per server process


def tensorboard(start: bool = False):
    """The TensorBoard serving this runs dir (started in the background when `start`), or None."""
    from profiler import tensorboard as tb

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
    return {}  # run id -> profiler.graph_viewer.Viewer; one at a time per server process


def model_explorer(run: ProfileRun, start: bool = False):
    """The Model Explorer serving this run's graph (started in the background when `start`, stopping any other),
    or None."""
    from profiler import graph_viewer

    running = _explorers()
    current = running.get(run.id)
    if current is not None and current.process.poll() is not None:
        running.pop(run.id)
        current = None
    if current is None and start:
        for other in list(running):
            running.pop(other).stop()
        current = running[run.id] = graph_viewer.serve_run(run)
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


def list_comparisons():
    """Saved applies and searches, newest first."""
    return store.list_comparisons(runs_dir())


def run_label(summary) -> str:
    name = summary.label or summary.model
    when = summary.created[5:16].replace("T", " ")
    return f"{name} · {summary.device.split(':')[0]} · {summary.median_ms:.3g} ms · {when}"


def pick_run(key: str = "pick_run", label: str = "Run") -> ProfileRun | None:
    """Select box over saved runs bound to the session's current run; shows guidance when there are none."""
    runs = [r for r in list_runs() if not r.error]
    if not runs:
        st.info("No saved runs yet. Profile a model on the **Profile** page first (the tiny models take seconds).")
        st.page_link("app_pages/profile.py", label="Go to Profile", icon=":material/speed:")
        return None
    ids = [r.id for r in runs]
    current = st.session_state.get(RUN_KEY)
    index = ids.index(current) if current in ids else 0
    labels = {r.id: run_label(r) for r in runs}
    chosen = st.selectbox(label, ids, index=index, format_func=labels.get, key=key)
    st.session_state[RUN_KEY] = chosen
    try:
        return load_run(chosen)
    except RunStoreError as exc:
        st.error(str(exc))
        return None


def about(text: str) -> None:
    with st.expander("About / how to read this"):
        st.markdown(text)


def number_columns(formats: dict[str, str]) -> dict:
    """Streamlit column configs for the printf formats profiler.tables chose (text columns left as they are)."""
    out = {}
    for header, fmt in formats.items():
        if fmt == "percent":
            out[header] = st.column_config.ProgressColumn(header, format="percent", min_value=0, max_value=1)
        elif fmt:
            out[header] = st.column_config.NumberColumn(header, format=fmt)
    return out
