"""Scaling sweeps: one model measured across batch sizes, sequence lengths / image sizes, thread counts, dtypes and
devices, with the knee (where throughput stops paying for batch) and crossovers (where another setting wins).

Every point is measured as a profile is (same warm-up, repeats and lock), lighter: no graph, one profiled
iteration. A point that fails (out of memory, say) is kept with its reason: where a sweep stops is a finding too.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import os
from typing import Callable

import torch

from profiler import stats
from profiler.measure.session import CancelToken, new_run_id, profile
from profiler.models.loading import load_model
from profiler.schema import OpLensError, ProfileCancelled, ProfileConfig, ProfileRun, Sweep, SweepPoint

KNEE_SHARE = 0.9  # the knee: the smallest batch reaching this share of the best throughput


def sweep(spec: str, batch_sizes: list[int], seq_lens: list[int | None] | None = None,
          threads: list[int] | None = None, dtypes: list[str] | None = None, devices: list[str] | None = None,
          config: ProfileConfig | None = None, arch: str | None = None,
          progress: Callable[[str, float], None] | None = None, cancel: CancelToken | None = None) -> Sweep:
    """Measure every combination of the axes; the model is loaded once per (batch, length)."""
    base = config or ProfileConfig(warmup=2, repeats=5, min_time_s=0.5)
    seq_lens, threads = seq_lens or [None], threads or [torch.get_num_threads()]
    dtypes, devices = dtypes or [base.dtype], devices or [base.device]
    say = progress or (lambda stage, f: None)
    combos = list(itertools.product(batch_sizes, seq_lens, threads, dtypes, devices))
    points: list[SweepPoint] = []
    before = torch.get_num_threads()
    device_name = ""
    try:
        loaded, loaded_for = None, None
        for i, (batch, seq, n_threads, dtype, device) in enumerate(combos):
            if cancel is not None and cancel.is_set():
                raise ProfileCancelled("sweep cancelled")
            label = f"batch {batch}" + (f", length {seq}" if seq else "") + f", {n_threads} threads, {dtype}, {device}"
            say(f"{label} ({i + 1}/{len(combos)})", i / len(combos))
            point = SweepPoint(batch_size=batch, seq_len=seq or 0, threads=n_threads, dtype=dtype, device=device)
            try:
                if loaded_for != (batch, seq):
                    loaded, loaded_for = None, None  # free the previous size before building the next
                    loaded, loaded_for = load_model(spec, batch_size=batch, seq_len=seq, arch=arch), (batch, seq)
                torch.set_num_threads(n_threads)
                cfg = ProfileConfig(**{**base.to_dict(), "device": device, "dtype": dtype, "graph": False,
                                       "profile_iters": 1})
                run = profile(loaded, cfg, cancel=cancel)
            except ProfileCancelled:
                raise
            except OpLensError as exc:
                point.error = str(exc).splitlines()[0][:300]
                points.append(point)
                continue
            point = point_from_run(run, threads=n_threads)
            device_name = device_name or f"{run.device.kind}: {run.device.name}"
            points.append(point)
    finally:
        torch.set_num_threads(before)
    say("done", 1.0)
    axes = {"batch_size": batch_sizes, "seq_len": [s for s in seq_lens if s], "threads": threads, "dtype": dtypes,
            "device": devices}
    return Sweep(id=new_run_id(f"sweep-{spec}"), created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                 model=spec, axes={k: v for k, v in axes.items() if v}, points=points,
                 findings=knees(points) + crossovers(points), device_name=device_name)


def point_from_run(run: ProfileRun, threads: int | None = None) -> SweepPoint:
    """A run's latency, throughput and peak memory as one sweep point, at the sizes that really ran."""
    lat, cfg = run.latency, run.config
    point = SweepPoint(batch_size=cfg.batch_size, seq_len=cfg.seq_len, threads=threads or run.device.threads,
                       dtype=cfg.dtype, device=cfg.device, median_ms=lat.median_ms, p10_ms=lat.p10_ms,
                       p90_ms=lat.p90_ms, iqr_ms=lat.iqr_ms,
                       throughput_per_s=stats.throughput_per_s(run.config.batch_size, run.latency.median_ms))
    if run.memory:
        point.peak_memory_bytes, point.memory_kind = run.memory.peak_bytes, run.memory.kind
    return point
def sweep_and_save(spec: str, batch_sizes: list[int], seq_lens: list[int | None] | None = None,
                   threads: list[int] | None = None, dtypes: list[str] | None = None,
                   devices: list[str] | None = None, config: ProfileConfig | None = None, arch: str | None = None,
                   runs_dir: str | os.PathLike | None = None, progress: Callable[[str, float], None] | None = None,
                   cancel: CancelToken | None = None) -> Sweep:
    """sweep(), then keep it in the run store: what the CLI and the dashboard's sweep job run. A store that cannot
    be written fails before measuring; a sweep where no point ran raises with the first point's reason."""
    from profiler import store

    store.check_writable(runs_dir)
    result = sweep(spec, batch_sizes, seq_lens, threads, dtypes, devices, config, arch=arch, progress=progress,
                   cancel=cancel)
    if all(p.error for p in result.points):
        raise OpLensError(f"no point of the sweep ran: {result.points[0].error}")
    store.save_sweep(result, runs_dir)
    return result


def _series(points: list[SweepPoint], axis: str) -> dict[tuple, list[SweepPoint]]:
    """Points grouped by every setting except `axis`, each group sorted along `axis`; failed points left out."""
    keys = ("batch_size", "seq_len", "threads", "dtype", "device")
    out: dict[tuple, list[SweepPoint]] = {}
    for p in points:
        if p.error:
            continue
        out.setdefault(tuple(getattr(p, k) for k in keys if k != axis), []).append(p)
    return {k: sorted(v, key=lambda p: getattr(p, axis)) for k, v in out.items()}


def _setting(p: SweepPoint, without: str) -> str:
    parts = {"seq_len": f"length {p.seq_len}" if p.seq_len else "", "threads": _value("threads", p.threads),
             "dtype": p.dtype, "device": p.device, "batch_size": f"batch {p.batch_size}"}
    return ", ".join(v for k, v in parts.items() if k != without and v)


def knees(points: list[SweepPoint]) -> list[str]:
    """Per series over batch size: the smallest batch reaching KNEE_SHARE of its best throughput."""
    out = []
    for series in _series(points, "batch_size").values():
        if len(series) < 3:
            continue
        best = max(series, key=lambda p: p.throughput_per_s)
        knee = next(p for p in series if p.throughput_per_s >= KNEE_SHARE * best.throughput_per_s)
        if knee is best and knee is series[0]:
            out.append(f"{_setting(knee, 'batch_size')}: batching does not raise throughput here — the best is "
                       f"{best.throughput_per_s:,.1f}/s at batch {best.batch_size}")
        elif knee is series[-1]:
            out.append(f"{_setting(knee, 'batch_size')}: throughput still rising at batch {knee.batch_size} "
                       f"({knee.throughput_per_s:,.1f}/s); try larger batches")
        else:
            out.append(f"{_setting(knee, 'batch_size')}: knee at batch {knee.batch_size} — "
                       f"{knee.throughput_per_s:,.1f}/s, {100 * knee.throughput_per_s / best.throughput_per_s:.0f}% of "
                       f"the best ({best.throughput_per_s:,.1f}/s at batch {best.batch_size}) at "
                       f"{best.median_ms / knee.median_ms:.1f}x lower latency")
    return out


def _value(axis: str, v) -> str:
    return f"{v} thread{'s' if v != 1 else ''}" if axis == "threads" else str(v)


def crossovers(points: list[SweepPoint]) -> list[str]:
    """Where two settings of threads, dtype or device swap places in latency as the batch grows."""
    out = []
    for axis in ("device", "dtype", "threads"):
        by_setting: dict[tuple, dict] = {}
        for p in points:
            if p.error:
                continue
            rest = tuple(getattr(p, k) for k in ("seq_len", "threads", "dtype", "device") if k != axis)
            by_setting.setdefault(rest, {}).setdefault(getattr(p, axis), {})[p.batch_size] = p
        for rest, settings in by_setting.items():
            for a, b in itertools.combinations(sorted(settings, key=str), 2):
                common = sorted(set(settings[a]) & set(settings[b]))
                faster = [settings[a][x].median_ms < settings[b][x].median_ms for x in common]
                if len(common) >= 2 and len(set(faster)) == 1:
                    win, lose = (a, b) if faster[0] else (b, a)
                    ratios = [settings[lose][x].median_ms / settings[win][x].median_ms for x in common]
                    out.append(
                        f"{axis}: {_value(axis, win)} is faster than {_value(axis, lose)} at every batch size measured "
                        f"({min(ratios):.2f}-{max(ratios):.2f}x)"
                    )
                for (x0, f0), (x1, f1) in zip(zip(common, faster), zip(common[1:], faster[1:])):
                    if f0 != f1:
                        win_before, win_after = (a, b) if f0 else (b, a)
                        out.append(
                            f"{axis} crossover between batch {x0} and {x1}: {_value(axis, win_before)} is faster "
                            f"up to batch {x0}, {_value(axis, win_after)} from batch {x1}"
                        )
    return out
