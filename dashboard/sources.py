"""The model-source picker shared by the Profile and Optimize pages: a sample model, an uploaded file, a path on this
server (a file or a Hugging Face model directory), a Hub id, and (Optimize) a saved run's model with its config.
It only renders widgets and returns what was chosen; the model is loaded by the worker the job goes to."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import streamlit as st

from profiler import ModelLoadError, RunStoreError, policy
from profiler.models import sources
from profiler.models.loading import file_spec, hub_spec
from profiler.schema import ProfileConfig

from . import state

SAVED_RUN = "A saved run"
SOURCES = ["Sample model", "Upload a file", "Path on this server", "Hugging Face Hub id"]


@dataclass
class ModelChoice:
    spec: str = ""  # what profiler.load_model is given; empty until something is chosen
    arch: str | None = None  # architecture of a state dict
    kind: str = "text"  # "text" or "image": labels the sequence-length input
    default_batch: int = 0  # 0 passes no size on: the model keeps its own default
    default_seq: int = 0
    config: ProfileConfig | None = None  # a saved run's config, to be used as it is
    run_id: str = ""  # the saved run chosen, if any
    problem: str = ""  # why this choice cannot be used, in one line


def _sample(key: Callable[[str], str]) -> ModelChoice:
    models = {m.name: m for m in sources.catalogue()}
    names = list(models)
    name = st.selectbox("Sample model", names, index=names.index("bert-tiny") if "bert-tiny" in models else 0,
                        key=key("sample"), format_func=lambda n: f"{n} — {models[n].description}")
    m = models[name]
    return ModelChoice(spec=name, kind=m.input_kind, default_batch=m.batch_size, default_seq=m.seq_len)


def accepts_line() -> str:
    """What this server loads, said on the form before anything is submitted (a refusal after it wastes a try)."""
    if policy.allow_code():
        return ("This server runs code (started with OPLENS_ALLOW_CODE=1): a `.py` file is run to build the model "
                "from its factory, as the person who started the server.")
    return ("This server loads TorchScript (.pt/.ts), torch.export (.pt2), a state dict with its architecture, and "
            "Hugging Face model folders. It does not run Python files (`file.py:factory`) or unpickle: an "
            "instructor enables them by starting it with `OPLENS_ALLOW_CODE=1 streamlit run dashboard/app.py`.")


def _upload(key: Callable[[str], str]) -> ModelChoice:
    code = policy.allow_code()  # .py files (and pickles) only when the server was started with OPLENS_ALLOW_CODE=1
    kinds = "TorchScript .pt, torch.export .pt2, a state dict" + (", or .py with a factory (runs code)" if code else "")
    st.caption(accepts_line())
    up = st.file_uploader(f"Model file: {kinds}", key=key("upload"),
                          type=["pt", "pth", "pt2", "ts"] + (["py", "pkl", "pickle"] if code else []),
                          max_upload_size=policy.max_file_bytes() // 2**20)  # the server's own limit, shown
    factory = st.text_input("Factory function (for .py files)", "build_model", key=key("factory")) if code else ""
    arch = st.selectbox("Architecture (for a state dict)", [""] + sources.catalogue_names(), key=key("arch")) or None
    spec = ""
    if up is not None:
        try:
            target = state.save_upload(up)
        except policy.PolicyError as exc:
            return ModelChoice(problem=str(exc))
        spec = file_spec(target, factory)
    return ModelChoice(spec=spec, arch=arch, default_batch=0, default_seq=0)  # 0: the model's own default


def _path(key: Callable[[str], str]) -> ModelChoice:
    code = policy.allow_code()
    st.caption(accepts_line())
    spec = st.text_input("Path: " + ("file.py:factory, " if code else "") + "a Hugging Face model directory, "
                         "TorchScript, .pt2", placeholder="models/my_model.py:build" if code else "models/my_model.pt2",
                         key=key("path")).strip()
    arch = st.selectbox("Architecture (for a state dict)", [""] + sources.catalogue_names(),
                        key=key("arch_path")) or None
    return ModelChoice(spec=spec, arch=arch, default_batch=0, default_seq=0)


def _hub(key: Callable[[str], str]) -> ModelChoice:
    hub = st.text_input("Hub id (needs the network)", placeholder="bert-base-uncased", key=key("hub")).strip()
    return ModelChoice(spec=hub_spec(hub), default_batch=0, default_seq=0)


def _saved_run(key: Callable[[str], str]) -> ModelChoice:
    from profiler.models.loading import reload_spec

    runs = state.my_runs()
    if not runs:
        return ModelChoice(
            problem="No saved runs yet: profile a model on the Profile page first, or pick another source."
        )
    ids = [r.id for r in runs]
    current = st.session_state.get(state.RUN_KEY)
    labels = {r.id: state.run_label(r) for r in runs}
    run_id = st.selectbox("Saved run", ids, index=ids.index(current) if current in ids else 0, format_func=labels.get,
                          key=key("saved_run"), help="Its model is loaded again and measured with the same config")
    try:
        run = state.load_run(run_id)
        spec, arch = reload_spec(run.model, run_id)
    except (RunStoreError, ModelLoadError) as exc:
        return ModelChoice(run_id=run_id, problem=str(exc))
    c = run.config
    if any(n.startswith("optimized from run") for n in run.notes):
        st.caption(f"That run measured an optimized model ({run.model.name}); the model it started from is loaded.")
    st.caption(f"Same config as that run: {c.device}, batch {c.batch_size}, sequence/image {c.seq_len}, {c.dtype}, "
               f"{c.warmup} warm-up and at least {c.repeats} timed iterations.")
    return ModelChoice(spec=spec, arch=arch, default_batch=c.batch_size, default_seq=c.seq_len,
                       config=ProfileConfig.from_dict(c.to_dict()), run_id=run_id)


PICKERS: dict[str, Callable[[Callable[[str], str]], ModelChoice]] = {
    "Sample model": _sample, "Upload a file": _upload, "Path on this server": _path, "Hugging Face Hub id": _hub,
    SAVED_RUN: _saved_run}


def pick_model(prefix: str = "", saved_runs: bool = False) -> ModelChoice:
    """Render the source radio and that source's inputs; widget keys are `prefix` + name (source, sample, path ...)."""
    options = SOURCES + ([SAVED_RUN] if saved_runs else [])
    source = st.radio("Model source", options, horizontal=True, key=f"{prefix}source")
    choice = PICKERS[source](lambda name: f"{prefix}{name}")
    if choice.spec and not choice.problem:
        try:  # the same rule the worker applies again before it loads anything
            policy.check_server_model(choice.spec, sources.catalogue_names())
        except policy.PolicyError as exc:
            choice.problem = str(exc)
        else:
            if policy.code_kind(choice.spec):
                st.warning(f"**Runs code**: {policy.model_file(choice.spec)} is {policy.code_kind(choice.spec)}; "
                           "this server was started with OPLENS_ALLOW_CODE=1, so it is loaded: a Python file by "
                           "running it, a pickle weights-only.",
                           icon=":material/warning:")
    return choice
