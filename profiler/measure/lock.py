"""A cross-process measurement lock, so two jobs (two workshop participants, a CLI and the dashboard) never time
on top of each other. One lock file per machine: timings on one machine interfere whatever the runs dir."""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from typing import Callable, Iterator


def lock_path() -> str:
    return os.environ.get("OPLENS_LOCK_FILE") or os.path.join(tempfile.gettempdir(), "oplens-measure.lock")


@contextmanager
def measurement_lock(waiting: Callable[[float], None] | None = None, poll_s: float = 0.2) -> Iterator[None]:
    """Hold the machine-wide measurement lock. `waiting(seconds)` is called while another job holds it, and may
    raise ProfileCancelled to give up."""
    with open(lock_path(), "a+") as f:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waiting:
                    waiting(time.monotonic() - started)
                time.sleep(poll_s)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

