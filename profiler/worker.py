"""Run one job in its own process: `python -m profiler.worker '<job json>'`.

The dashboard launches jobs this way so a model that hogs the GIL, crashes the interpreter or is killed for memory
never takes the server down with it, and the server's own work does not disturb the timing. The protocol is JSON
lines on stdout: {"progress": stage, "fraction": f}, then one of {"done": result}, {"failed": message},
{"cancelled": true}. SIGINT (or SIGTERM) cancels at the next iteration. `serve` is shared with optimizers.worker.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any, Callable

from .schema import OpLensError, ProfileCancelled, ProfileConfig

Say = Callable[[str, float], None]


def _say(**message) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(run: Callable[[dict, Say, threading.Event], Any], argv: list[str]) -> int:
    """Parse the job, wire cancellation to signals, run it, and report the outcome as one final JSON line."""
    job = json.loads(argv[0])
    cancel = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: cancel.set())
    try:
        _say(done=run(job, lambda stage, f: _say(progress=stage, fraction=f), cancel))
    except ProfileCancelled:
        _say(cancelled=True)
    except OpLensError as exc:
        _say(failed=str(exc))
    except Exception as exc:  # noqa: BLE001 - report it as a message; the traceback goes to stderr for the log
        import traceback

        traceback.print_exc()
        _say(failed=f"unexpected {type(exc).__name__}: {exc}")
    return 0


def load_job_model(job: dict, say: Say, cancel: threading.Event):
    """The job's config and its model, loaded as the job describes; raises ProfileCancelled if cancelled meanwhile."""
    from .loading import load_model

    config = ProfileConfig.from_dict(job["config"])
    say("loading the model", 0.0)
    loaded = load_model(job["spec"], batch_size=config.batch_size or None, seq_len=config.seq_len or None,
                        arch=job.get("arch"))
    if cancel.is_set():
        raise ProfileCancelled("cancelled while loading the model")
    return config, loaded


def profile_job(job: dict, say: Say, cancel: threading.Event) -> str:
    from . import store
    from .runner import profile

    config, loaded = load_job_model(job, say, cancel)
    run = profile(loaded, config, progress=say, cancel=cancel)
    store.save(run, job.get("runs_dir"))
    return run.id


if __name__ == "__main__":
    sys.exit(serve(profile_job, sys.argv[1:]))
