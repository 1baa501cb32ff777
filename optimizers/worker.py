"""Optimizer jobs in their own process (the dashboard's launcher): `python -m optimizers.worker '<json>'`, with the
same JSON-lines protocol as profiler.worker. Kinds: "check" (which passes apply to the model here), "optimize"
(apply passes and measure) and "search"; optimize and search save their result as a comparison in the run store and
return it (a SavedComparison as a dict)."""
from __future__ import annotations

import sys
import threading

from profiler import devices
from profiler.worker import Say, load_job_model, serve

from . import results
from .base import applicability
from .optimize import optimize, waterfall
from .search import search


def check_job(job: dict, say: Say, cancel: threading.Event) -> list[dict]:
    config, loaded = load_job_model(job, say, cancel)
    say("checking which passes apply", 0.5)
    return applicability(loaded, devices.resolve_device(config.device))


def search_job(job: dict, say: Say, cancel: threading.Event) -> dict:
    config, loaded = load_job_model(job, say, cancel)
    result = search(loaded, config, budget_s=float(job.get("budget_s", 120)), beam=int(job.get("beam", 2)),
                    progress=say, cancel=cancel, save_runs=True, runs_dir=job.get("runs_dir"))
    saved = results.from_search(result, loaded, config, job.get("arch"), job.get("source_run_id", ""))
    return results.keep(saved, job.get("runs_dir")).to_dict()


def optimize_job(job: dict, say: Say, cancel: threading.Event) -> dict:
    config, loaded = load_job_model(job, say, cancel)
    result = optimize(loaded, job["passes"], config, progress=lambda s, f: say(s, 0.8 * f), cancel=cancel,
                      runs_dir=job.get("runs_dir"))
    applied = [p.name for p in result.passes if p.applied]
    steps = None
    if len(applied) > 1:  # the waterfall: what each pass added, measured the same way
        steps = waterfall(loaded, applied, config, result, progress=lambda s, f: say(s, 0.8 + 0.2 * f), cancel=cancel)
    saved = results.from_apply(result, loaded, config, job.get("arch"), job.get("source_run_id", ""), steps)
    return results.keep(saved, job.get("runs_dir")).to_dict()


JOBS = {"check": check_job, "optimize": optimize_job, "search": search_job}


def run_job(job: dict, say: Say, cancel: threading.Event):
    return JOBS[job.get("kind", "optimize")](job, say, cancel)


if __name__ == "__main__":
    sys.exit(serve(run_job, sys.argv[1:]))
