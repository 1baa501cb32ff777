"""The work of every operator call in a trace (FLOPs and bytes from its recorded signature, profiler.traces.work),
placed on the op whose time it explains, and the per-signature table TraceLens calls its perf-model sheets.

Which call holds the work: of a call stack whose ops all have formulas (aten::linear -> aten::addmm), the innermost
one whose formula resolved; the ops around it are wrappers (their work is inside). Kernel time is *explained* when
its op holds work, wraps an op that does, or runs inside one; FLOP coverage is the explained share of the trace's
compute kernel time (kernels and memsets; communication kernels move data between devices and are left out; device
work launched outside any operator, a CUDA/HIP graph replay, has no recorded shapes and counts as unexplained).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from profiler import op_categories as oc
from profiler.schema import ShapeStat
from profiler.traces import formulas
from profiler.traces import work as work_mod
from profiler.traces.attribution import COMM_KERNEL, Attribution, _named
from profiler.traces.columns import TraceData

TOP_SHAPES = 300  # signature rows kept in a run (most time first); the rest are summed into the op rows only


@dataclass
class CallWork:
    """Per op event: the work it holds, and whether its time is explained (see the module docstring)."""

    flops: np.ndarray  # counted FLOPs of the event (0 where it holds none)
    bytes: np.ndarray
    counted: np.ndarray  # bool: the event holds work
    known: np.ndarray  # bool: its time is explained
    family: list[str]  # per call signature (d.calls)
    dtype: list[str]
    params: list[str]
    call_flops: np.ndarray  # per call signature (NaN: unknown)
    call_bytes: np.ndarray
    own_us: np.ndarray  # per op event: event_time_us, computed once for coverage, per_name and shape_stats
    incl_us: np.ndarray
    comm_us: np.ndarray


def _signature_work(d: TraceData) -> tuple[np.ndarray, np.ndarray, list[str], list[str], list[str]]:
    n = len(d.calls)
    fl, by = np.full(n, np.nan), np.full(n, np.nan)
    family, dtype, params = [""] * n, [""] * n, [""] * n
    from_backward = work_mod.backward_shapes([(d.names[nid], call) for nid, call in d.calls])
    short = formulas.SHORT_DTYPE
    for i, (nid, call) in enumerate(d.calls):
        w = work_mod.of_call(d.names[nid], call, from_backward)
        # the first tensor's dtype (a backward may start with a size list: cudnn_convolution_backward_weight)
        dtype[i] = next((short[t] for t in call.types if isinstance(t, str) and t in short), "")
        if w is not None:
            fl[i], by[i] = w.flops, w.bytes if w.bytes is not None else np.nan
            family[i], params[i] = w.family, w.params
    return fl, by, family, dtype, params


def _propagate_up(parent: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Every strict ancestor of the events in `start` (a bool mask)."""
    out = np.zeros(len(parent), dtype=bool)
    frontier = parent[start]
    while len(frontier):
        frontier = frontier[frontier >= 0]
        frontier = frontier[~out[frontier]]
        out[frontier] = True
        frontier = np.unique(parent[frontier]) if len(frontier) else frontier
    return out


def _inside(parent: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Events with an ancestor in `mask`."""
    out = np.zeros(len(parent), dtype=bool)
    has = parent >= 0
    while True:
        nxt = np.zeros(len(parent), dtype=bool)
        nxt[has] = mask[parent[has]] | out[parent[has]]
        if (nxt == out).all():
            return out
        out = nxt


def call_work(d: TraceData, a: Attribution) -> CallWork:
    ops = d.ops
    n = len(ops["ts"])
    cfl, cby, family, dtype, params = _signature_work(d)
    cid = ops["call"] if "call" in ops else np.full(n, -1)
    fl, by = np.full(n, np.nan), np.full(n, np.nan)
    ok = cid >= 0
    fl[ok], by[ok] = cfl[cid[ok]], cby[cid[ok]]
    for i, w in d.overflow.items():
        if w is not None:
            fl[i], by[i] = w.flops, w.bytes if w.bytes is not None else np.nan
    _conv_grads(d, a, cid, fl, by, family, params)
    resolved = ~np.isnan(fl)
    wrapper = _propagate_up(a.op_parent, resolved)
    counted = resolved & ~wrapper
    own = ops["flops"] > 0  # the trace's own FLOPs (with_flops=True), where no formula resolved
    theirs = own & ~resolved & ~wrapper & ~_propagate_up(a.op_parent, own & resolved)
    counted_all = counted | theirs
    known = counted_all | wrapper | _inside(a.op_parent, counted_all) | _zero_work(d)
    flops = np.where(counted, np.nan_to_num(fl), 0.0) + np.where(theirs, ops["flops"], 0.0)
    moved = np.where(counted, np.nan_to_num(by), 0.0)
    own_us, incl_us, comm_us = event_time_us(d, a, bool(len(d.device["ts"])))
    return CallWork(flops=flops, bytes=moved, counted=counted_all, known=known, family=family, dtype=dtype,
                    params=params, call_flops=cfl, call_bytes=cby, own_us=own_us, incl_us=incl_us, comm_us=comm_us)


def _conv_grads(d: TraceData, a: Attribution, cid: np.ndarray, fl: np.ndarray, by: np.ndarray, family: list[str],
                params: list[str]) -> None:
    """The backward halves of 2021-era cuDNN convolutions, sized from the backward op each runs inside (one
    signature can stand for a 1x1 and a 3x3 layer alike, so this is per event)."""
    ids = [j for j, nm in enumerate(d.names) if nm in work_mod.CONV_GRAD]
    if not ids:
        return
    names = d.ops["name"]
    done: dict[tuple[int, int], object] = {}  # (signature, its parent's): a million-step trace has a few hundred
    for i in np.flatnonzero(np.isin(names, ids) & np.isnan(fl) & (cid >= 0)).tolist():
        p = int(a.op_parent[i])
        if p < 0 or cid[p] < 0:
            continue
        key = (int(cid[i]), int(cid[p]))
        if key not in done:
            done[key] = work_mod.conv_grad_from_parent(d.names[names[i]], d.calls[cid[i]][1], d.names[names[p]],
                                                       d.calls[cid[p]][1])
        w = done[key]
        if w is not None:
            fl[i], by[i] = w.flops, w.bytes if w.bytes is not None else np.nan
            c = cid[i]
            # one signature, layers of different kernel sizes: say so rather than name one of them
            params[c] = w.params if params[c] in ("", w.params) else "sizes differ per call (from each backward op)"
            family[c] = w.family


def _zero_work(d: TraceData) -> np.ndarray:
    """Views and allocations: no work and (almost) no kernel time, never unexplained."""
    return _named(d, d.ops["name"], lambda nm: nm in oc.VIEWS)


def event_time_us(d: TraceData, a: Attribution, on_gpu: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(self time, inclusive time, communication self time) per op event, in us. On a GPU, self time is kernels and
    memsets (copies are transfers, not compute) and inclusive time adds the op's copies and its children's device
    work (as TraceLens times an op); host time otherwise."""
    n, dev = len(d.ops["ts"]), d.device
    if not on_gpu:
        return a.op_self_host, d.ops["dur"], np.zeros(n)
    own = np.zeros(n)
    comm = np.zeros(n)
    launched = (a.dev_op >= 0) & (dev["kind"] != 1)
    np.add.at(own, a.dev_op[launched], dev["dur"][launched])
    is_comm = _named(d, dev["name"], lambda nm: bool(COMM_KERNEL.search(nm))) & launched
    np.add.at(comm, a.dev_op[is_comm], dev["dur"][is_comm])
    incl = own.copy()
    copies = (a.dev_op >= 0) & (dev["kind"] == 1)
    np.add.at(incl, a.dev_op[copies], dev["dur"][copies])
    for i in reversed(a.op_order):
        p = a.op_parent[i]
        if p >= 0:
            incl[p] += incl[i]
    return own, incl, comm


def coverage(d: TraceData, a: Attribution, cw: CallWork, on_gpu: bool) -> tuple[float, float, float]:
    """(explained share, explained us, compute us) of the trace's compute time (see the module docstring)."""
    compute = cw.own_us - cw.comm_us
    explained = float(compute[cw.known].sum())
    total = float(compute.sum())
    if on_gpu:  # device work no operator launched: graph replays, work queued before recording
        dev = d.device
        orphan = (a.dev_op < 0) & (dev["kind"] != 1)
        orphan &= ~_named(d, dev["name"], lambda nm: bool(COMM_KERNEL.search(nm)))
        total += float(dev["dur"][orphan].sum())
    return (explained / total if total > 0 else 1.0), explained, total


def per_name(d: TraceData, cw: CallWork) -> dict[str, tuple[float, float, bool, str]]:
    """Per op name: (FLOPs, bytes, known, dtype of most counted time) over the trace."""
    own = cw.own_us
    names = d.ops["name"]
    m = len(d.names)
    flops = np.bincount(names, weights=cw.flops, minlength=m)
    moved = np.bincount(names, weights=cw.bytes, minlength=m)
    unexplained = np.bincount(names, weights=np.where(cw.known, 0.0, own), minlength=m)
    time_by: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    cid = d.ops["call"]
    for i in np.flatnonzero(cw.counted & (cid >= 0)).tolist():
        time_by[int(names[i])][cw.dtype[cid[i]]] += own[i] + 1e-9
    out = {}
    for j in set(names.tolist()):
        by_dtype = time_by.get(j)
        dtype = max(by_dtype, key=by_dtype.get) if by_dtype else ""
        out[d.names[j]] = (float(flops[j]), float(moved[j]), bool(unexplained[j] <= 0), dtype)
    return out


def shape_stats(d: TraceData, cw: CallWork, top: int = TOP_SHAPES) -> list[ShapeStat]:
    """One row per (op, signature) that holds work or has unexplained time, most time first."""
    own, incl, comm = cw.own_us, cw.incl_us, cw.comm_us
    cid = d.ops["call"]
    rows = cw.counted | (~cw.known & (own - comm > 0))
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i in np.flatnonzero(rows).tolist():
        c = int(cid[i])
        groups[(int(d.ops["name"][i]), c if c >= 0 else -1)].append(i)
    out = []
    for (nid, c), idx in groups.items():
        times = incl[idx] if cw.counted[idx[0]] else own[idx]
        median = statistics.median(times.tolist()) if len(times) else 0.0  # as pandas: the middle two's mean
        counted = bool(cw.counted[idx[0]])
        per_call_fl = float(cw.flops[idx].mean()) if counted else 0.0
        per_call_by = float(cw.bytes[idx].mean()) if counted else 0.0
        call = d.calls[c][1] if c >= 0 else None
        out.append(ShapeStat(
            op=d.names[nid], shape=str([x for x in call.dims if x]) if call else "(no shapes recorded, or past "
            "the signatures kept per op)", dtype=cw.dtype[c] if c >= 0 else "",
            family=cw.family[c] if c >= 0 else "", params=cw.params[c] if c >= 0 else "", calls=float(len(idx)),
            time_ms=float(times.sum()) / 1e3, median_us=median, flops=per_call_fl, bytes=per_call_by, known=counted,
            tflops=per_call_fl / (median * 1e-6) / 1e12 if median > 0 else 0.0,
            tbs=per_call_by / (median * 1e-6) / 1e12 if median > 0 else 0.0))
    out.sort(key=lambda s: -s.time_ms)
    return out[:top]
