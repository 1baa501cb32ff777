"""Which directories a server may read traces from.

The dashboard runs as a server: a file path typed into it must not reach /etc or another user's home. Files are read
only under $OPLENS_DATA_DIRS (os.pathsep-separated), else the runs dir, the upload folder, the repository's tests/data
and the shared traces folder beside the repository. The command line reads whatever path its user names (it is their
own machine), so it passes allow_any=True.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import store

REPO = Path(__file__).resolve().parents[1]
UPLOADS = Path(tempfile.gettempdir()) / "oplens-uploads"  # where dashboard.state.save_upload puts files


def allowed_dirs() -> list[Path]:
    env = os.environ.get("OPLENS_DATA_DIRS")
    if env:
        return [Path(p).expanduser().resolve() for p in env.split(os.pathsep) if p]
    return [
        store.runs_dir().resolve(),
        UPLOADS.resolve(),
        REPO / "tests" / "data",
        (REPO.parent / "shared" / "traces").resolve(),
    ]


def allowed(path: str | os.PathLike) -> bool:
    """True when `path` (symlinks resolved) lies inside one of the allowed directories."""
    p = Path(path).expanduser().resolve()
    return any(p == d or d in p.parents for d in allowed_dirs())
