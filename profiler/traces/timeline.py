"""The GPU timeline of a step, with the definitions HTA and TraceLens use: pure interval arithmetic over a
trace's arrays, and the per-step timeline of an attributed trace.

window  the GPU-side ProfilerStep#N annotation, else the span of the GPU work the step launched, else of all GPU work
busy    union of kernel, memcpy and memset intervals inside the window (several streams overlap: a union, not a sum)
idle    window - busy, split by cause: the host was blocked in a synchronize or blocking copy during the gap ("sync"),
        the host had not yet launched the work that ended the gap ("host", HTA's host wait), a gap shorter than
        SHORT_GAP_US between work already queued ("short": the fixed cost from one kernel to the next, HTA's kernel
        wait), or none of these ("other")
computation / communication (NCCL/RCCL and symmetric-memory all-reduce kernels) / memcpy / memset: unions
exposed communication: communication time not overlapped by computation (TraceLens's definition)
exposed memcpy: memcpy time overlapped by neither computation nor communication (TraceLens's definition)
launch: the host time spent in launch calls per step; kernels shorter than their launch: a kernel whose duration is
        under the runtime call that launched it (HTA's launch statistics): the host cannot keep such a GPU busy
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

from profiler.schema import GpuTimeline
from profiler.traces.attribution import COMM_KERNEL, Attribution, _named, attribute
from profiler.traces.columns import TraceData

SHORT_KERNEL_US = 10.0  # kernels shorter than this are mostly launch overhead on current GPUs
SHORT_GAP_US = 30.0  # idle gaps under this between queued kernels are the fixed kernel-to-kernel cost (HTA's default)
SYNC_CALLS = ("Synchronize", "cudaMemcpy", "hipMemcpy", "cudaStreamWaitEvent", "hipStreamWaitEvent")
ASYNC_SUFFIX = "Async"


def union(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merged, sorted, non-overlapping intervals covering the same time as the input."""
    if len(starts) == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum.accumulate(ends[order])
    # a new interval begins where a start lies beyond every earlier end
    new = np.empty(len(s), dtype=bool)
    new[0] = True
    new[1:] = s[1:] > e[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(s) - 1)
    return s[first], e[last]


def length(starts: np.ndarray, ends: np.ndarray) -> float:
    """Time covered by intervals (their union)."""
    s, e = union(starts, ends)
    return float((e - s).sum())


def clip(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """The parts of the intervals inside [lo, hi]."""
    s, e = np.maximum(starts, lo), np.minimum(ends, hi)
    keep = e > s
    return s[keep], e[keep]


def is_sync_call(name: str) -> bool:
    """A host call that blocks until the device catches up (synchronize, wait, blocking copy)."""
    return any(t in name for t in SYNC_CALLS) and not (("Memcpy" in name) and ASYNC_SUFFIX in name)


@dataclass
class DeviceWork:
    """Device activity of one trace as arrays; `launch_ts` is the runtime call's start (NaN when not in the trace)."""

    ts: np.ndarray
    end: np.ndarray
    kind: np.ndarray  # 0 kernel, 1 memcpy, 2 memset
    comm: np.ndarray  # bool: a communication (NCCL/RCCL) kernel
    launch_ts: np.ndarray
    sync_ts: np.ndarray  # host blocking calls and GPU-side waits, merged
    sync_end: np.ndarray
    launch_dur: np.ndarray | None = None  # duration of the launching runtime call (NaN when not in the trace)


def breakdown(w: DeviceWork, lo: float, hi: float) -> dict[str, float]:
    """Every timeline figure of one window [lo, hi], in microseconds."""
    inside = (w.end > lo) & (w.ts < hi)
    s, e = np.maximum(w.ts[inside], lo), np.minimum(w.end[inside], hi)
    kind, comm = w.kind[inside], w.comm[inside]
    kernel = kind == 0
    comp_mask, comm_mask = kernel & ~comm, kernel & comm
    bs, be = union(s, e)
    busy = float((be - bs).sum())
    comp = length(s[comp_mask], e[comp_mask])
    comm_t = length(s[comm_mask], e[comm_mask])
    both = length(np.concatenate([s[comp_mask], s[comm_mask]]), np.concatenate([e[comp_mask], e[comm_mask]]))
    copy = kind == 1
    with_copies = length(np.concatenate([s[comp_mask | comm_mask], s[copy]]), np.concatenate([e[comp_mask | comm_mask],
                                                                                               e[copy]]))
    out = {"window": hi - lo, "busy": busy, "idle": max(0.0, hi - lo - busy), "computation": comp, "comm": comm_t,
           "exposed_comm": max(0.0, both - comp), "memcpy": length(s[copy], e[copy]),
           "exposed_memcpy": max(0.0, with_copies - both), "memset": length(s[kind == 2], e[kind == 2])}
    out.update(idle_causes(w, bs, be, lo, hi))
    raw_ts, launch = w.ts[inside][kernel], w.launch_ts[inside][kernel]
    known = ~np.isnan(launch)
    delays = raw_ts[known] - launch[known]
    out["launch_overhead"] = statistics.median(delays.tolist()) if len(delays) else 0.0  # np.median imports numpy.ma
    durations = (w.end[inside] - w.ts[inside])[kernel]
    out["short_kernels"] = float((durations < SHORT_KERNEL_US).sum())
    if w.launch_dur is not None:
        ld = w.launch_dur[inside]
        out["shorter_than_launch"] = float((durations < ld[kernel]).sum())  # NaN launches compare False
        out["launch_cpu"] = float(np.nansum(ld))
    else:
        out["shorter_than_launch"] = out["launch_cpu"] = 0.0
    return out


def idle_causes(w: DeviceWork, bs: np.ndarray, be: np.ndarray, lo: float, hi: float) -> dict[str, float]:
    """Split the gaps between busy intervals by what the host was doing (see the module docstring)."""
    g0 = np.concatenate([[lo], be])
    g1 = np.concatenate([bs, [hi]])
    keep = g1 > g0
    g0, g1 = g0[keep], g1[keep]
    if not len(g0):
        return {"idle_host": 0.0, "idle_sync": 0.0, "idle_short": 0.0, "idle_other": 0.0}
    gap = g1 - g0
    # sync: a blocking host call or GPU-side wait overlaps the gap (merged intervals: the last one starting before it)
    sync = np.zeros(len(g0), dtype=bool)
    if len(w.sync_ts):
        j = np.searchsorted(w.sync_ts, g1, side="left") - 1
        ok = j >= 0
        sync[ok] = w.sync_end[j[ok]] > g0[ok]
    # host: the work that ended the gap was launched after the GPU went idle (HTA's host wait)
    order = np.argsort(w.ts, kind="stable")
    starts = w.ts[order]
    k = np.searchsorted(starts, g1, side="left")
    has_next = k < len(starts)
    launch = np.full(len(g0), np.nan)
    launch[has_next] = w.launch_ts[order][k[has_next]]
    host = ~sync & (launch > g0)
    short = ~sync & ~host & (gap < SHORT_GAP_US)
    other = ~sync & ~host & ~short
    return {"idle_host": float(gap[host].sum()), "idle_sync": float(gap[sync].sum()),
            "idle_short": float(gap[short].sum()), "idle_other": float(gap[other].sum())}




# ---------------------------------------------------------------- figures from one attributed trace

def _device_work(d: TraceData, a: Attribution) -> DeviceWork:
    dev = d.device
    comm = _named(d, dev["name"], lambda n: bool(COMM_KERNEL.search(n))) & (dev["kind"] == 0)
    # host calls that block (synchronize, blocking copies) and GPU-side waits: the "sync" cause of idle time
    rt = d.runtime
    is_sync = _named(d, rt["name"], is_sync_call)
    ss = np.concatenate([rt["ts"][is_sync], d.gpu_syncs["ts"]])
    se = np.concatenate([rt["ts"][is_sync] + rt["dur"][is_sync], d.gpu_syncs["ts"] + d.gpu_syncs["dur"]])
    ss, se = union(ss, se)
    launch_dur = np.full(len(a.dev_rt), np.nan)
    known = a.dev_rt >= 0
    launch_dur[known] = rt["dur"][a.dev_rt[known]]
    return DeviceWork(ts=dev["ts"], end=dev["ts"] + dev["dur"], kind=dev["kind"], comm=comm,
                      launch_ts=a.dev_launch_ts, sync_ts=ss, sync_end=se, launch_dur=launch_dur)


def step_windows(d: TraceData, a: Attribution) -> tuple[list[tuple[float, float]], str]:
    """(start, end) of each step's GPU window, and where they came from (see gpu_timeline's docstring)."""
    dev = d.device
    if not len(dev["ts"]):
        return [], "none"
    if len(d.gpu_steps["ts"]):
        win: dict[int, list[float]] = {}
        for n, s, du in zip(d.gpu_steps["name"].tolist(), d.gpu_steps["ts"].tolist(), d.gpu_steps["dur"].tolist()):
            w = win.setdefault(n, [s, s + du])  # one annotation per stream: the step spans them all
            w[0], w[1] = min(w[0], s), max(w[1], s + du)
        return sorted((w[0], w[1]) for w in win.values()), "gpu-annotation"
    launch = a.dev_launch_ts
    out = []
    for s, du in sorted(zip(d.cpu_steps["ts"].tolist(), d.cpu_steps["dur"].tolist())):
        inside = (launch >= s) & (launch <= s + du)
        if inside.any():
            out.append((float(dev["ts"][inside].min()), float((dev["ts"] + dev["dur"])[inside].max())))
    if out:
        return out, "cpu-step"
    return [(float(dev["ts"].min()), float((dev["ts"] + dev["dur"]).max()))], "gpu-span"


def gpu_timeline(d: TraceData, a: Attribution) -> GpuTimeline | None:
    windows, source = step_windows(d, a)
    if not windows:
        return None
    work = _device_work(d, a)
    per = [breakdown(work, lo, hi) for lo, hi in windows]
    mean = {k: statistics.fmean(p[k] for p in per) for k in per[0]}
    ms = lambda k: mean[k] / 1e3  # noqa: E731
    return GpuTimeline(
        steps=len(per),
        window_ms=ms("window"),
        busy_ms=ms("busy"),
        idle_ms=ms("idle"),
        computation_ms=ms("computation"),
        comm_ms=ms("comm"),
        exposed_comm_ms=ms("exposed_comm"),
        memcpy_ms=ms("memcpy"),
        memset_ms=ms("memset"),
        idle_host_ms=ms("idle_host"),
        idle_sync_ms=ms("idle_sync"),
        idle_other_ms=ms("idle_other"),
        idle_short_ms=ms("idle_short"),
        exposed_memcpy_ms=ms("exposed_memcpy"),
        kernels_shorter_than_launch=mean["shorter_than_launch"],
        launch_cpu_ms=ms("launch_cpu"),
        launch_overhead_ms=statistics.median(p["launch_overhead"] for p in per) / 1e3,
        short_kernels=mean["short_kernels"],
        window_source=source,
        step_window_ms=[p["window"] / 1e3 for p in per],
        step_busy_ms=[p["busy"] / 1e3 for p in per],
    )


def whole_trace_breakdown(d: TraceData, a: Attribution | None = None) -> dict[str, float]:
    """The timeline figures over the span from the first to the last device event (HTA's temporal breakdown), in us."""
    a = a or attribute(d)
    dev = d.device
    if not len(dev["ts"]):
        return {}
    return breakdown(_device_work(d, a), float(dev["ts"].min()), float((dev["ts"] + dev["dur"]).max()))

