"""What the server lets in: which directories it reads files from, which model files count as code, how large a file
may be, and what an uploaded file is called. One module, so the dashboard, its workers and the command line apply the
same rules.

The dashboard is a server that runs models for other people, so it is strict by default: files are read only under
$OPLENS_DATA_DIRS (os.pathsep-separated; default the runs dir, the upload folder, the repository's tests/data and the
shared traces folder beside the repository; uploads are always readable), no file over $OPLENS_MAX_FILE_MB (default
512, the same as server.maxUploadSize in .streamlit/config.toml), and no Python file or pickle unless the server was
started with OPLENS_ALLOW_CODE=1. The command line reads whatever path its user names and runs a `.py` file named
explicitly (the user is at their own shell). Neither ever unpickles arbitrary objects: every torch.load is
weights_only=True, and `no_pickled_code` closes the fallbacks torch.export.load has.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from profiler import store
from profiler.schema import OpLensError

REPO = Path(__file__).resolve().parents[1]
UPLOADS = Path(tempfile.gettempdir()) / "oplens-uploads"  # where dashboard.state.save_upload puts files
DEFAULT_MAX_FILE_MB = 512
# the dashboard's own input limit: a model that accepts a billion tokens allocates until the OOM killer ends the
# process without a word, so the command line refuses such sizes up front
MAX_SEQ_LEN = 65536
# suffix -> what it is: a Python file runs when loaded; a pickle can carry code (OpLens reads it weights-only anyway)
CODE = {".py": "a Python file", ".pkl": "a pickle", ".pickle": "a pickle"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class PolicyError(OpLensError):
    """A file or name this server does not accept; the message says which rule and how to change it."""


def allow_code() -> bool:
    return os.environ.get("OPLENS_ALLOW_CODE") == "1"


def max_file_bytes() -> int:
    try:
        return int(float(os.environ.get("OPLENS_MAX_FILE_MB") or DEFAULT_MAX_FILE_MB) * 2**20)
    except ValueError:
        return DEFAULT_MAX_FILE_MB * 2**20


def data_dirs() -> list[Path]:
    env = os.environ.get("OPLENS_DATA_DIRS")
    if env:
        dirs = [Path(p).expanduser().resolve() for p in env.split(os.pathsep) if p]
    else:
        dirs = [store.runs_dir().resolve(), REPO / "tests" / "data", (REPO.parent / "shared" / "traces").resolve()]
    return dirs + [UPLOADS.resolve()]


def allowed(path: str | os.PathLike) -> bool:
    """True when `path` (symlinks and `..` resolved) lies inside one of the data directories."""
    p = Path(path).expanduser().resolve()
    return any(p == d or d in p.parents for d in data_dirs())


def confine(path: str | os.PathLike, what: str = "file") -> Path:
    """The resolved path; PolicyError when it lies outside the data directories."""
    if not allowed(path):
        raise PolicyError(f"{path}: this server reads {what}s only from {', '.join(str(d) for d in data_dirs())}; "
                          "the instructor can add a directory with OPLENS_DATA_DIRS")
    return Path(path).expanduser().resolve()


def check_size(path: str | os.PathLike, what: str = "file") -> None:
    """PolicyError when the file is over the server's size limit (directories are not measured)."""
    p = Path(path)
    size = p.stat().st_size if p.is_file() else 0
    if size > max_file_bytes():
        raise PolicyError(f"{p.name}: {size / 2**20:.0f} MiB is over this server's limit of "
                          f"{max_file_bytes() / 2**20:.0f} MiB for a {what}; OPLENS_MAX_FILE_MB raises it")


def model_file(spec: str) -> str:
    """The file or directory part of a model spec (`dir/model.py:build` -> `dir/model.py`)."""
    return spec.rsplit(":", 1)[0] if ".py:" in spec else spec


def code_kind(spec: str) -> str:
    """'a Python file' or 'a pickle' when loading `spec` means running code it holds; '' otherwise."""
    return CODE.get(Path(model_file(spec)).suffix.lower(), "")


def check_server_model(spec: str, ready: Iterable[str] = ()) -> None:
    """Raise PolicyError, in one line, when the dashboard may not load `spec`: code without OPLENS_ALLOW_CODE=1, a
    path outside the data directories, a file over the size limit, or a Hub id that is really a path. `ready` names
    the catalogue's models (profiler.models.sources.catalogue_names()), which bring nothing from outside."""
    spec = (spec or "").strip()
    if spec in ready:  # a ready model (a sample): nothing from outside
        return
    if spec.startswith("hf:"):
        # transformers reads an existing local folder of that name instead of the Hub: that is a path, not an id
        if not HUB_ID.match(spec[3:]) or ".." in spec or os.path.exists(spec[3:]):
            raise PolicyError(f"'{spec[3:]}' is not a Hugging Face Hub id (owner/name); for a model directory on "
                              "this server use 'Path on this server'")
        return
    if not any(c in spec for c in "/.~" + os.sep):
        return  # a bare word is no path: the loader says it is an unknown model
    kind = code_kind(spec)
    if kind and not allow_code():
        raise PolicyError(f"{Path(model_file(spec)).name} is {kind}, which can carry code: this server takes code "
                          "from participants only when started with OPLENS_ALLOW_CODE=1; use TorchScript, "
                          ".pt2, safetensors, a state dict or a Hugging Face directory")
    path = confine(model_file(spec), "model file")
    check_size(path, "model file")


def safe_upload_name(name: str) -> str:
    """A file name that stays inside the upload folder: no directories, no leading dots, plain characters."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name).replace("\\", "/")).name).lstrip(".")[:120]
    return base or "upload"


@contextlib.contextmanager
def no_pickled_code():
    """While open, torch.load is weights_only=True whatever its caller asks, and torch.export's pickle.loads of
    "opaque" constants refuses: torch.export.load otherwise falls back to full unpickling for weights, constants and
    example inputs it cannot read weights-only, so a crafted .pt2 could run a command."""
    import pickle

    import torch

    real_load, real_loads = torch.load, pickle.loads

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    def refuse(*_a, **_k):
        raise PolicyError("the archive holds pickled Python objects, which OpLens never unpickles")

    torch.load, pickle.loads = weights_only_load, refuse
    try:
        yield
    finally:
        torch.load, pickle.loads = real_load, real_loads
