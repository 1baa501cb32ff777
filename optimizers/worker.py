"""Optimize and search jobs in their own process (the dashboard's launcher): `python -m optimizers.worker '<json>'`.
Same JSON-lines protocol as profiler.worker."""
from __future__ import annotations

import sys
import threading

from profiler.worker import Say, load_job_model, serve

from .optimize import optimize, waterfall
from .search import search


def optimize_job(job: dict, say: Say, cancel: threading.Event) -> dict:
    config, loaded = load_job_model(job, say, cancel)
    if job.get("kind") == "search":
        return search(loaded, config, budget_s=float(job.get("budget_s", 120)), beam=int(job.get("beam", 2)),
                      progress=say, cancel=cancel).to_dict()
    result = optimize(loaded, job["passes"], config, progress=lambda s, f: say(s, 0.8 * f), cancel=cancel,
                      runs_dir=job.get("runs_dir"))
    out = result.to_dict()
    applied = [p.name for p in result.passes if p.applied]
    if len(applied) > 1:  # the waterfall: what each pass added, measured the same way
        out["waterfall"] = waterfall(loaded, applied, config, result, progress=lambda s, f: say(s, 0.8 + 0.2 * f),
                                     cancel=cancel)
    return out


if __name__ == "__main__":
    sys.exit(serve(optimize_job, sys.argv[1:]))
