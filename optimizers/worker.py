"""The optimizers' job kinds, registered with the job layer (profiler.jobs): "check" (which passes apply to the
model here), "optimize" (apply passes and measure), "search", "generate" (optimize a decoder's generation) and
"train-passes" (training passes, or their search). Optimize, search and train-passes save their result as a
comparison in the run store and return it (a SavedComparison as a dict).
They run in a worker process started by `python -m profiler.jobs`, which imports this module for these kinds."""
from __future__ import annotations

import threading

from profiler import devices
from profiler.jobs import job
from profiler.jobs.kinds import Say
from profiler.jobs.worker import load_job_model, load_payload_model

from . import results
from .base import applicability
from .optimize import optimize, waterfall
from .search import search


@job("check")
def check_job(payload: dict, say: Say, cancel: threading.Event) -> list[dict]:
    config, loaded = load_job_model(payload, say, cancel)
    say("checking which passes apply", 0.5)
    return applicability(loaded, devices.resolve_device(config.device))


@job("search")
def search_job(payload: dict, say: Say, cancel: threading.Event) -> dict:
    config, loaded = load_job_model(payload, say, cancel)
    result = search(loaded, config, budget_s=float(payload.get("budget_s", 120)), beam=int(payload.get("beam", 2)),
                    progress=say, cancel=cancel, save_runs=True, runs_dir=payload.get("runs_dir"),
                    include_emulated=bool(payload.get("include_emulated", False)))
    saved = results.from_search(result, loaded, config, payload.get("arch"), payload.get("source_run_id", ""))
    return results.keep(saved, payload.get("runs_dir")).to_dict()


@job("optimize")
def optimize_job(payload: dict, say: Say, cancel: threading.Event) -> dict:
    config, loaded = load_job_model(payload, say, cancel)
    result = optimize(loaded, payload["passes"], config, progress=lambda s, f: say(s, 0.8 * f), cancel=cancel,
                      runs_dir=payload.get("runs_dir"))
    applied = [p.name for p in result.passes if p.applied]
    steps = None
    if len(applied) > 1:  # the waterfall: what each pass added, measured the same way
        steps = waterfall(loaded, applied, config, result, progress=lambda s, f: say(s, 0.8 + 0.2 * f), cancel=cancel)
    saved = results.from_apply(result, loaded, config, payload.get("arch"), payload.get("source_run_id", ""), steps)
    return results.keep(saved, payload.get("runs_dir")).to_dict()


@job("generate")
def generate_job(payload: dict, say: Say, cancel: threading.Event) -> list[dict]:
    """Optimize a decoder for generation: the payload's passes, or a search; GenerationResults as dicts, best first."""
    from profiler.schema import GenerateConfig

    from .generation import optimize_or_search

    loaded = load_payload_model(payload, say, cancel)
    found, _ = optimize_or_search(loaded, GenerateConfig.from_dict(payload.get("generate") or {}),
                                  list(payload.get("passes") or []), bool(payload.get("search")),
                                  payload.get("objective", "tpot"), int(payload.get("rounds", 3)),
                                  payload.get("runs_dir"), progress=say)
    return [r.to_dict() for r in found]


@job("train-passes")
def train_passes_job(payload: dict, say: Say, cancel: threading.Event) -> dict:
    """Training passes proven as `python -m optimizers train` proves them (the payload's passes, or a search), saved
    as a comparison of kind "train"."""
    from profiler.schema import TrainConfig

    from .training import compare
    from .training import search as train_search

    config = TrainConfig.from_dict(payload.get("train") or {})
    loaded = load_payload_model(payload, say, cancel, config.batch_size or None, config.seq_len or None)
    timing = {k: int(payload[k]) for k in ("rounds", "steps", "curve_steps") if payload.get(k)}
    if payload.get("search"):
        found = train_search(loaded, config, list(payload.get("passes") or []) or None, progress=say, **timing)
    else:
        found = [compare(loaded, list(payload["passes"]), config, progress=say, **timing)]
    saved = results.from_training(found, loaded, config, payload.get("source_run_id", ""))
    return results.keep(saved, payload.get("runs_dir")).to_dict()
