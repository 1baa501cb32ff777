"""Recommendations that prove themselves: the Why slow engine's answer for a saved run (profiler.analysis.why_slow,
with this machine's peaks, the model's latest sweep, the kept estimate/measured pairs and this registry's passes),
and `apply`, which runs a recommendation's passes with proof (outputs compared, both models profiled the same way)
and keeps the estimate/measured pair, so later estimates for those passes on this machine are scaled by how the
earlier ones held."""
from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable

from profiler import store
from profiler.analysis import recommend as rc
from profiler.analysis.why_slow import Diagnosis, diagnose
from profiler.measure import peaks as peaks_mod
from profiler.models.loading import load_model
from profiler.schema import OpLensError, Peaks, ProfileConfig, ProfileRun, Recommendation, Sweep

from . import results
from .base import REGISTRY
from .optimize import optimize


def latest_sweep(run: ProfileRun, runs_dir: str | os.PathLike | None = None) -> Sweep | None:
    """The newest saved sweep of the run's model, if any."""
    spec = run.model.spec or run.model.name
    sweeps = [s for s in store.list_sweeps(runs_dir) if s.model in (spec, run.model.name)]
    return max(sweeps, key=lambda s: s.created) if sweeps else None


def why_slow(run: ProfileRun, runs_dir: str | os.PathLike | None = None,
             measure_peaks: bool = True, peaks: Peaks | None = None) -> Diagnosis | None:
    """diagnose() with the run's ceilings (peaks.for_run: measured now when missing and `measure_peaks`, else None
    is returned: a page never measures), the GEMM rates on the model's own shapes (timed now when missing and
    `measure_peaks`, else only when cached), its model's latest sweep, this store's pairs and the registered passes.
    `peaks` given (a measured peaks file: devices.peaks_file) replace the ceilings for_run would pick."""
    peaks = peaks or peaks_mod.for_run(run, measure_missing=measure_peaks)
    if peaks is None:
        return None
    gemm = peaks_mod.model_gemm_rates(run, peaks, measure_missing=measure_peaks) \
        if peaks.source == "measured" and run.model.source != "trace" else None
    return diagnose(run, peaks, latest_sweep(run, runs_dir), store.recommendation_pairs(runs_dir),
                    frozenset(REGISTRY), gemm=gemm)


def record(rec: Recommendation, run: ProfileRun, runs_dir: str | os.PathLike | None = None) -> None:
    """Keep the pair (raw estimate, measured speedup) of an applied recommendation."""
    if rec.measured_speedup is None:
        return
    store.keep_recommendation_pair({
        "machine": rc.machine_key(run), "rule": rec.rule, "passes": rec.passes, "estimated": rec.raw_estimate,
        "measured": rec.measured_speedup, "run_id": run.id, "model": run.model.name,
        "comparison_id": rec.comparison_id, "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds")},
        runs_dir)


def measured(rec: Recommendation, saved: dict, run: ProfileRun,
             runs_dir: str | os.PathLike | None = None) -> Recommendation:
    """Fill the recommendation from a saved comparison (a dict, as the dashboard's optimize job returns it) and
    keep the pair."""
    rec.measured_speedup = float(saved.get("speedup", 1.0))
    acc = saved.get("accuracy") or {}
    rec.measured_accuracy = (
        {k: acc.get(k) for k in ("cosine", "max_abs_err", "top1_agreement", "passed")} if acc else None
    )
    rec.comparison_id = saved.get("id", "")
    record(rec, run, runs_dir)
    return rec


def apply(rec: Recommendation, run: ProfileRun, runs_dir: str | os.PathLike | None = None,
          warmup: int | None = None, repeats: int | None = None,
          progress: Callable[[str, float], None] | None = None) -> Recommendation:
    """Apply the recommendation's passes to the run's model with proof (outputs compared, both profiled the same
    way), save the comparison, keep the pair, and return the recommendation with its measured speedup."""
    if not rec.passes:
        raise OpLensError(f"'{rec.title}' names no pass to apply")
    config = run.config.to_dict()
    config.update({k: v for k, v in (("warmup", warmup), ("repeats", repeats)) if v is not None})
    if repeats is not None:
        config["min_time_s"] = 0.0
    config = ProfileConfig.from_dict(config)
    loaded = load_model(run.model.spec or run.model.name, batch_size=config.batch_size, seq_len=config.seq_len)
    result = optimize(loaded, rec.passes, config, progress=progress, runs_dir=runs_dir)
    saved = results.keep(results.from_apply(result, loaded, config, source_run_id=run.id), runs_dir)
    return measured(rec, saved.to_dict(), run, runs_dir)
