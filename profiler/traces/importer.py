"""A trace recorded elsewhere becomes a ProfileRun: per-operator host and device time, kernels, transfers, the GPU
timeline per step, the module tree, and a validation report of what was read and skipped.

Attribution (as HTA and TraceLens do it): a kernel, memcpy or memset shares a correlation id with the runtime call that
launched it; its operator is the innermost cpu_op on the launching thread whose interval encloses that call. Device
work whose launch is not in the trace (queued before recording started) is reported as unattributed, never guessed.
Operator, kernel and transfer figures are totals over the whole trace; the GPU timeline is per profiler step.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from profiler.schema import (
    DeviceInfo,
    GpuTimeline,
    LatencyStats,
    ModelInfo,
    ProfileConfig,
    ProfileRun,
    SkippedEvents,
    Totals,
    TraceFormatError,
    TraceValidation,
)
from profiler.stats import summarize
from profiler.traces.attribution import (
    NO_OPERATOR,
    TRANSFER_LABEL,
    Attribution,
    _per_op_time,
    attribute,
    module_graph,
)
from profiler.traces.columns import TraceData, load
from profiler.traces.figures import figures
from profiler.traces.ranks import _rank_of, rank_stats
from profiler.traces.serving import serving_phases
from profiler.traces import training as training_steps
from profiler.traces.timeline import gpu_timeline

# ---------------------------------------------------------------- the run

def _device_info(d: TraceData, on_gpu: bool) -> tuple[DeviceInfo, str]:
    props = d.metadata.get("deviceProperties") or []
    meta = d.metadata
    rocm = any(k in meta for k in ("roctracer_version", "hip_runtime_version")) or any(
        d.names[n].startswith("hip") for n in d.runtime["name"][:50].tolist())
    platform = "ROCm/HIP" if rocm else "CUDA"
    if not on_gpu:
        return DeviceInfo(kind="cpu", name="CPU (imported trace)", threads=0, torch="unknown (imported trace)"), ""
    used = sorted(set(d.device["device"].tolist()))
    p = next((x for x in props if isinstance(x, dict) and x.get("id") in used), props[0] if props else None)
    if not isinstance(p, dict):
        return DeviceInfo(kind="cuda", name=f"{platform} GPU (no deviceProperties in the trace)", threads=0,
                          torch="unknown (imported trace)"), platform
    cap = f"{p.get('computeMajor')}.{p.get('computeMinor')}" if "computeMajor" in p else None
    return DeviceInfo(kind="cuda", name=str(p.get("name", f"{platform} GPU")), threads=0,
                      torch="unknown (imported trace)", index=p.get("id"), total_memory_bytes=p.get("totalGlobalMem"),
                      capability=cap), platform


def _latency(d: TraceData, gpu: GpuTimeline | None) -> tuple[LatencyStats, str]:
    """Step durations stand in for latency samples: an imported trace has no timed iterations of its own."""
    if len(d.cpu_steps["dur"]):
        return summarize((d.cpu_steps["dur"] / 1e3).tolist()), "latency samples are the ProfilerStep durations " \
               "on the host (one per recorded step, with the profiler on), not separately timed iterations"
    if gpu is not None and gpu.step_window_ms:
        return summarize(gpu.step_window_ms), "latency samples are the GPU step windows (no host-side ProfilerStep)"
    spans = [arr for arr in (d.ops, d.device) if len(arr["ts"])]
    lo = min(float(x["ts"].min()) for x in spans) if spans else 0.0
    hi = max(float((x["ts"] + x["dur"]).max()) for x in spans) if spans else 0.0
    return summarize([(hi - lo) / 1e3] if hi > lo else []), "latency is the span of the whole trace (no steps recorded)"


def _validation(datas: list[TraceData], attrs: list[Attribution]) -> TraceValidation:
    read: Counter = Counter()
    skipped: dict[str, list] = {}
    warnings = []
    for d, a in zip(datas, attrs):
        read.update(d.read)
        for what, s in d.skipped.items():
            r = skipped.setdefault(what, [0, s.why])
            r[0] += s.count
        missing = int((a.dev_op == -2).sum())
        if missing:
            r = skipped.setdefault("device events without their launch", [0, "the launch (same correlation id) is "
                                   "not in the trace, e.g. queued before recording started: reported as unattributed"])
            r[0] += missing
        if a.overlaps:
            r = skipped.setdefault("overlapping slices", [0, "operators ending after the operator enclosing their "
                                   "start (broken nesting on one thread): only the part inside it is taken from its "
                                   "self time, never counted twice"])
            r[0] += a.overlaps
        outside = int((a.dev_op == -1).sum())
        if outside:
            r = skipped.setdefault("launches outside any operator", [0, "no cpu_op encloses the runtime call (e.g. "
                                   "a CUDA graph replay): reported under " + NO_OPERATOR.format("<runtime call>")])
            r[0] += outside
        name = Path(d.path).name
        if len(d.device["ts"]) and not d.metadata.get("deviceProperties"):
            warnings.append(f"{name}: no deviceProperties; the GPU's name and memory are unknown")
        if len(datas) > 1 and "rank" not in (d.metadata.get("distributedInfo") or {}):
            warnings.append(f"{name}: no distributedInfo.rank; the rank is taken from the file order")
        if not len(d.ops["ts"]):
            warnings.append(f"{name}: no cpu_op events; operator figures are empty")
    ranks = Counter(_rank_of(d, i) for i, d in enumerate(datas))
    warnings += [f"{c} files claim rank {r}: are they from one job?" for r, c in sorted(ranks.items()) if c > 1]
    return TraceValidation(files=[d.path for d in datas], events=sum(d.events for d in datas), read=dict(read),
                           skipped=[SkippedEvents(what=k, count=v[0], why=v[1]) for k, v in skipped.items()],
                           warnings=warnings)



def _notes(d: TraceData, datas: list[TraceData], on_gpu: bool, platform: str, latency_note: str,
           gpu: GpuTimeline | None) -> list[str]:
    """What a reader of the imported run should know about its figures."""
    notes = [f"imported from {Path(d.path).name}" + (f" ({platform})" if platform else " (CPU-only trace)"),
             "operator, kernel and transfer figures are totals over the whole trace; the GPU timeline is per step",
             latency_note,
             "exec time is device (kernel and memset) self time per operator" if on_gpu else
             "exec time is host self time per operator (no device activity in the trace)"]
    if on_gpu and gpu is not None:
        notes.append(f"GPU step window from {gpu.window_source} ({gpu.steps} step{'s' if gpu.steps != 1 else ''})")
    if not on_gpu:
        notes.append("no device events: the GPU timeline and transfers are empty")
    if len(datas) > 1:
        notes.append(f"{len(datas)} ranks; operators, kernels, transfers and the timeline are rank "
                     f"{_rank_of(d, 0)}'s, and its trace is the one saved with the run; every rank is in ranks[]")
    return notes


READ_SHARE = 0.9  # of the progress bar: reading is most of an import's time; attribution and figures the rest


def _read_all(files: list[Path], progress: Callable[[str, float], None] | None) -> list[TraceData]:
    sizes = [f.stat().st_size if f.is_file() else 0 for f in files]
    total, done, out = max(1, sum(sizes)), 0, []
    for f, size in zip(files, sizes):
        def step(share: float, before: int = done, size: int = size, name: str = f.name) -> None:
            progress(f"reading {name}", READ_SHARE * (before + share * size) / total)
        out.append(load(f, step if progress else None))
        done += size
    if progress:
        progress("matching kernels to operators", READ_SHARE)
    return out


def import_trace(path: str | Path | list, progress: Callable[[str, float], None] | None = None) -> ProfileRun:
    """Turn one trace file (or several: the ranks of one job) into a ProfileRun with model.source "trace";
    TraceFormatError for anything that is not a readable trace. It reads what it is handed, as the CLI does: the
    server's data-directory and size policy applies at the server's boundary (the import job), not here.
    `progress(stage, fraction)` follows the reading (by bytes, over all files) and the analysis."""
    files = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    if not files:
        raise TraceFormatError("no trace file given")
    datas = _read_all(files, progress)
    for d in datas:
        if not d.read or not (len(d.ops["ts"]) or len(d.device["ts"])):
            raise TraceFormatError(f"{Path(d.path).name}: the trace holds no operator or device events "
                                   f"({d.events} events read); nothing to import")
    order = sorted(range(len(datas)), key=lambda i: _rank_of(datas[i], i))
    datas = [datas[i] for i in order]
    attrs = [attribute(d) for d in datas]
    d, a = datas[0], attrs[0]  # the run's own figures are the lowest rank's
    figs = figures(d, a)
    gpu = figs.gpu
    timelines = [gpu] + [gpu_timeline(d_, a_) for d_, a_ in zip(datas[1:], attrs[1:])]
    on_gpu = bool(len(d.device["ts"]))
    device, platform = _device_info(d, on_gpu)
    latency, latency_note = _latency(d, gpu)
    ops = figs.ops
    graph = module_graph(d, a, _per_op_time(d, a, on_gpu) if a.module_paths else None, on_gpu)
    exec_ms = sum(o.exec_ms for o in ops)
    trans_ms = sum(o.trans_ms for o in ops)
    spans = [x for x in (d.ops, d.device) if len(x["ts"])]
    wall_ms = (max(float((x["ts"] + x["dur"]).max()) for x in spans) - min(float(x["ts"].min()) for x in spans)) / 1e3
    notes = _notes(d, datas, on_gpu, platform, latency_note, gpu)
    validation = _validation(datas, attrs)
    name = Path(d.path).name.split(".")[0] or "trace"
    digest = hashlib.sha1("|".join(str(f.resolve()) for f in files).encode()).hexdigest()[:6]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:40]
    return ProfileRun(
        id=f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-trace-{slug}-{digest}",
        created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        model=ModelInfo(
            name=name, source="trace", parameters=0, spec=", ".join(str(f) for f in files), task="imported trace"
        ),
        device=device,
        config=ProfileConfig(
            device=device.kind,
            batch_size=1,
            seq_len=0,
            warmup=0,
            repeats=len(latency.samples_ms),
            min_time_s=0.0,
            profile_iters=max(1, len(latency.samples_ms)),
            graph=bool(a.module_paths),
        ),
        latency=latency,
        totals=Totals(
            wall_ms=wall_ms,
            exec_ms=exec_ms,
            trans_ms=trans_ms,
            coverage=(exec_ms + trans_ms) / wall_ms if wall_ms > 0 else 0.0,
            unexplained_ms=max(0.0, wall_ms - exec_ms - trans_ms),
            trans_label=TRANSFER_LABEL if on_gpu else "host data movement (copies; no device in the trace)",
            flop_coverage=figs.flop_coverage,
        ),
        ops=ops,
        transfers=figs.transfers,
        graph=graph,
        trace_path=str(Path(d.path).resolve()),
        label=f"trace: {name}",
        notes=notes,
        warnings=list(validation.warnings),
        versions={k: str(v) for k, v in d.metadata.items() if k.endswith("_version") or k == "schemaVersion"},
        kernels=figs.kernels,
        gpu=gpu,
        validation=validation,
        ranks=rank_stats(datas, timelines) if len(datas) > 1 else [],
        phases=serving_phases(d, a),
        shapes=figs.shapes,
        training=training_steps.from_trace(d),
    )
