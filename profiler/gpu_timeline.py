"""The GPU timeline of a step, with the definitions HTA and TraceLens use: pure interval arithmetic over arrays.

window  the GPU-side ProfilerStep#N annotation, else the span of the GPU work the step launched, else of all GPU work
busy    union of kernel, memcpy and memset intervals inside the window (several streams overlap: a union, not a sum)
idle    window - busy, split by cause: the host had not yet launched the work that ended the gap ("host"), the host was
        blocked in a synchronize or blocking copy during the gap ("sync"), or neither ("other")
computation / communication (NCCL/RCCL and symmetric-memory all-reduce kernels) / memcpy / memset: unions
exposed communication: communication time not overlapped by computation
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np

SHORT_KERNEL_US = 10.0  # kernels shorter than this are mostly launch overhead on current GPUs
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
    out = {"window": hi - lo, "busy": busy, "idle": max(0.0, hi - lo - busy), "computation": comp, "comm": comm_t,
           "exposed_comm": max(0.0, both - comp), "memcpy": length(s[kind == 1], e[kind == 1]),
           "memset": length(s[kind == 2], e[kind == 2])}
    out.update(idle_causes(w, bs, be, lo, hi))
    raw_ts, launch = w.ts[inside][kernel], w.launch_ts[inside][kernel]
    known = ~np.isnan(launch)
    delays = raw_ts[known] - launch[known]
    out["launch_overhead"] = statistics.median(delays.tolist()) if len(delays) else 0.0  # np.median imports numpy.ma
    out["short_kernels"] = float(((w.end[inside] - w.ts[inside])[kernel] < SHORT_KERNEL_US).sum())
    return out


def idle_causes(w: DeviceWork, bs: np.ndarray, be: np.ndarray, lo: float, hi: float) -> dict[str, float]:
    """Split the gaps between busy intervals by what the host was doing (see the module docstring)."""
    g0 = np.concatenate([[lo], be])
    g1 = np.concatenate([bs, [hi]])
    keep = g1 > g0
    g0, g1 = g0[keep], g1[keep]
    if not len(g0):
        return {"idle_host": 0.0, "idle_sync": 0.0, "idle_other": 0.0}
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
    other = ~sync & ~host
    return {"idle_host": float(gap[host].sum()), "idle_sync": float(gap[sync].sum()),
            "idle_other": float(gap[other].sum())}
