"""The worker side: `python -m profiler.jobs '<payload json>'` runs one job in its own process and reports it with
the protocol. The payload's "kind" picks the registered job function; its "participant" tags what the job saves.

A job runs in its own process so a model that hogs the GIL, crashes the interpreter or is killed for memory never
takes the server down with it, and the server's own work does not disturb the timing. SIGINT (or SIGTERM) cancels
at the next iteration. The profiler's own kinds (profile, sweep, import) are registered here; the optimizers
register theirs in optimizers/worker.py.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import TextIO

from profiler import policy, store
from profiler.jobs import kinds
from profiler.jobs.kinds import Say, job
from profiler.jobs.protocol import Cancelled, Done, Failed, Message, Progress, Saved, encode
from profiler.models import sources
from profiler.schema import OpLensError, ProfileCancelled, ProfileConfig


def serve(argv: list[str], out: TextIO | None = None) -> int:
    """Parse the payload, wire cancellation to signals, run the job, and report its outcome as one final message."""
    if out is None:  # the protocol keeps stdout to itself: whatever the model prints goes to stderr (the job's log)
        out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
        sys.stdout.flush()
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def send(message: Message) -> None:
        out.write(encode(message))
        out.flush()

    try:
        payload = json.loads(argv[0]) if argv else None
    except json.JSONDecodeError:
        payload = None
    try:
        if not isinstance(payload, dict):
            raise OpLensError("not a JSON object")
        run = kinds.function(str(payload.get("kind", "profile")))
    except OpLensError as exc:
        send(Failed(f"bad job payload: {exc}"))
        return 2
    cancel = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: cancel.set())
    say: Say = lambda stage, f: send(Progress(stage, float(f)))
    try:
        with store.saving_as(str(payload.get("participant") or ""), lambda what, ident: send(Saved(what, ident))):
            send(Done(run(payload, say, cancel)))
    except ProfileCancelled as exc:
        send(Cancelled(str(exc)))
    except OpLensError as exc:
        send(Failed(str(exc)))
    except MemoryError:
        send(Failed("the model ran out of memory"))
    except Exception as exc:  # noqa: BLE001 - report it as a message; the traceback goes to stderr for the log
        import traceback

        traceback.print_exc()
        send(Failed(f"unexpected {type(exc).__name__}: {exc}"))
    return 0


def load_job_model(payload: dict, say: Say, cancel: threading.Event):
    """The job's config and its model, loaded at the config's sizes; ProfileCancelled if cancelled meanwhile."""
    config = ProfileConfig.from_dict(payload.get("config") or {})
    return config, load_payload_model(payload, say, cancel, config.batch_size or None, config.seq_len or None)


def load_payload_model(payload: dict, say: Say, cancel: threading.Event, batch_size: int | None = None,
                       seq_len: int | None = None):
    """The payload's model (its own sizes unless given), after the server's model policy; ProfileCancelled if
    cancelled while it loaded."""
    from profiler import policy
    from profiler.models.loading import load_model

    # jobs come from the dashboard: its rules hold whatever a page sent
    policy.check_server_model(payload["spec"], sources.catalogue_names())
    say("loading the model", 0.0)
    loaded = load_model(payload["spec"], batch_size=batch_size, seq_len=seq_len, arch=payload.get("arch"))
    if cancel.is_set():
        raise ProfileCancelled("cancelled while loading the model")
    return loaded


@job("profile")
def profile_job(payload: dict, say: Say, cancel: threading.Event) -> str:
    """Profile the model and save the run; returns its id."""
    from profiler.measure.session import profile

    config, loaded = load_job_model(payload, say, cancel)
    run = profile(loaded, config, progress=say, cancel=cancel)
    store.save(run, payload.get("runs_dir"))
    return run.id


@job("profile-generation")
def generation_job(payload: dict, say: Say, cancel: threading.Event) -> str:
    """Profile a greedy generation (profiler.generate, as `python -m profiler generate`) and save the run; returns
    its id."""
    from profiler.measure.generate import generate
    from profiler.schema import GenerateConfig

    config = GenerateConfig.from_dict(payload.get("generate") or {})
    loaded = load_payload_model(payload, say, cancel, config.batch_size, config.prompt_len)
    run = generate(loaded, config, progress=say, cancel=cancel)
    store.save(run, payload.get("runs_dir"))
    return run.id


@job("train")
def train_job(payload: dict, say: Say, cancel: threading.Event) -> str:
    """Profile training steps (profiler.measure.train, as `python -m profiler train`) and save the run; its id."""
    from profiler.measure.train import train
    from profiler.schema import TrainConfig

    config = TrainConfig.from_dict(payload.get("train") or {})
    ranks = int(payload.get("ranks") or 1)
    if ranks > 1:  # DDP over gloo on this machine; the model policy holds as for one process
        from profiler import policy
        from profiler.measure.distributed import train_ranks

        policy.check_server_model(payload["spec"], sources.catalogue_names())
        run = train_ranks(payload["spec"], config, ranks, int(payload.get("slow_rank", -1)),
                          float(payload.get("slow_ms") or 0), progress=say)
        store.save(run, payload.get("runs_dir"))
        return run.id
    loaded = load_payload_model(payload, say, cancel, config.batch_size or None, None)
    run = train(loaded, config, progress=say, cancel=cancel)
    store.save(run, payload.get("runs_dir"))
    return run.id


@job("sweep")
def sweep_job(payload: dict, say: Say, cancel: threading.Event) -> str:
    """Measure the model across the payload's axes and save the sweep (sweep_and_save, as the CLI); returns its id."""
    from profiler.measure.sweep import sweep_and_save

    axes = {k: payload.get(k) for k in ("seq_lens", "threads", "dtypes", "devices")}
    result = sweep_and_save(payload["spec"], list(payload.get("batch_sizes") or [1]), **axes,
                            config=ProfileConfig.from_dict(payload["config"]) if payload.get("config") else None,
                            arch=payload.get("arch"), runs_dir=payload.get("runs_dir"), progress=say, cancel=cancel)
    return result.id


@job("peaks")
def peaks_job(payload: dict, say: Say, cancel: threading.Event) -> dict:
    """Measure this machine's peaks for the payload's device (cached for every later roofline); returns them."""
    from profiler.measure import peaks

    return peaks.get(payload.get("device") or "cpu", refresh=bool(payload.get("refresh")), progress=say).to_dict()


@job("import")
def import_job(payload: dict, say: Say, cancel: threading.Event) -> str:
    """Import the payload's trace file(s) as a run and save it; returns its id."""
    from profiler.traces.importer import import_trace

    paths = payload["paths"] if isinstance(payload["paths"], list) else [payload["paths"]]
    for path in paths:  # the server reads only its data directories, within the size limit
        policy.check_size(policy.confine(path, "trace"), "trace")
    say("reading the trace", 0.0)

    def progress(stage: str, fraction: float) -> None:
        if cancel.is_set():  # a cancelled import stops at its next chunk; nothing is saved
            raise ProfileCancelled("import cancelled")
        say(stage, fraction)

    run = import_trace(paths, progress=progress)
    store.save(run, payload.get("runs_dir"))
    return run.id
