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
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from profiler import gpu_timeline as tl
from profiler import policy
from profiler.ops import TRANSFER_OPS
from profiler.schema import (
    DeviceInfo,
    Graph,
    GraphNode,
    GpuTimeline,
    KernelStat,
    LatencyStats,
    ModelInfo,
    OpStat,
    ProfileConfig,
    ProfileRun,
    RankStat,
    ServingPhase,
    SkippedEvents,
    Totals,
    TraceFormatError,
    TraceValidation,
    TransferStat,
)
from profiler.timing import summarize
from profiler.trace_data import LIVE_TAG, TraceData, load
from profiler.traces import memcpy_direction

UNATTRIBUTED = "(unattributed: launch not in trace)"
NO_OPERATOR = "(no operator: {})"  # launched by a runtime call no cpu_op encloses, e.g. a CUDA graph replay
# communication kernels: NCCL/RCCL, and the all-reduces that bypass them (torch symmetric memory, vLLM custom all-
# reduce)
COMM_KERNEL = re.compile(r"nccl|rccl|multimem_all_reduce|one_shot_all_reduce|two_shot_all_reduce|cross_device_reduce",
                         re.IGNORECASE)
STRAGGLER = 1.05  # a rank whose computation exceeds the median rank's by 5% holds the others back
TRANSFER_LABEL = "device copies (memcpy) issued by the operators, totals over the trace"
STEP_TRANSFER_LABEL = "device copies (memcpy) issued by the operators, per profiled step"


@dataclass
class Attribution:
    """Per-event results of matching one trace: which op launched each device event, op tree and self times."""

    dev_op: np.ndarray  # op index per device event; -1 launch outside any op; -2 launch not in trace
    dev_rt: np.ndarray  # runtime call index per device event; -1 when not in the trace
    dev_launch_ts: np.ndarray  # start of the runtime call per device event (NaN when missing)
    op_parent: np.ndarray
    op_self_host: np.ndarray  # us
    op_module: np.ndarray  # module path index per op (-1: none)
    op_order: list[int]  # ops, parents before children
    module_paths: list[str]
    module_class: list[str]


def attribute(d: TraceData) -> Attribution:
    """Match device events to runtime calls by correlation id, and runtime calls to enclosing ops per thread."""
    rt, dev, ops, mods = d.runtime, d.device, d.ops, d.modules
    # device event -> runtime call (first runtime call with that correlation id)
    rt_idx = np.full(len(dev["corr"]), -1, dtype=np.int64)
    if len(rt["corr"]) and len(dev["corr"]):
        order = np.argsort(rt["corr"], kind="stable")
        sorted_corr = rt["corr"][order]
        pos = np.searchsorted(sorted_corr, dev["corr"])
        pos_ok = pos < len(sorted_corr)
        hit = np.zeros(len(pos), dtype=bool)
        hit[pos_ok] = sorted_corr[pos[pos_ok]] == dev["corr"][pos_ok]
        hit &= dev["corr"] >= 0
        rt_idx[hit] = order[pos[hit]]
    launch_ts = np.full(len(rt_idx), np.nan)
    launch_ts[rt_idx >= 0] = rt["ts"][rt_idx[rt_idx >= 0]]

    n_ops, n_rt, n_mod = len(ops["ts"]), len(rt["ts"]), len(mods["ts"])
    parent = np.full(n_ops, -1, dtype=np.int64)
    child_time = np.zeros(n_ops)
    op_module = np.full(n_ops, -1, dtype=np.int64)
    op_of_rt = np.full(n_rt, -1, dtype=np.int64)
    paths_of: dict[tuple[int, int], int] = {}
    module_paths: list[str] = []
    module_class: list[str] = []
    op_order: list[int] = []

    # one sweep per thread over modules (kind 0), ops (1) and runtime calls (2) by start time; at equal starts the
    # enclosing kind and the longer interval come first, so a stack holds exactly the intervals enclosing `ts`
    thread = np.concatenate([mods["thread"], ops["thread"], rt["thread"]])
    ts = np.concatenate([mods["ts"], ops["ts"], rt["ts"]])
    dur = np.concatenate([mods["dur"], ops["dur"], rt["dur"]])
    kind = np.concatenate([np.zeros(n_mod, np.int8), np.ones(n_ops, np.int8), np.full(n_rt, 2, np.int8)])
    idx = np.concatenate([np.arange(n_mod), np.arange(n_ops), np.arange(n_rt)])
    order = np.lexsort((-dur, kind, ts, thread))
    cur = None
    op_stack: list[tuple[float, int]] = []
    mod_stack: list[tuple[float, int]] = []
    mod_names = mods["name"].tolist()
    for t, k, i, s, du in zip(thread[order].tolist(), kind[order].tolist(), idx[order].tolist(), ts[order].tolist(),
                              dur[order].tolist()):
        if t != cur:
            cur, op_stack, mod_stack = t, [], []
        while op_stack and op_stack[-1][0] <= s:
            op_stack.pop()
        while mod_stack and mod_stack[-1][0] <= s:
            mod_stack.pop()
        if k == 1:
            if op_stack:
                p = op_stack[-1][1]
                parent[i] = p
                child_time[p] += du
            if mod_stack:
                op_module[i] = mod_stack[-1][1]
            op_stack.append((s + du, i))
            op_order.append(i)
        elif k == 2:
            if op_stack:
                op_of_rt[i] = op_stack[-1][1]
        else:
            up = mod_stack[-1][1] if mod_stack else -1
            key = (up, mod_names[i])
            pid = paths_of.get(key)
            if pid is None:
                pid = paths_of[key] = len(module_paths)
                short = d.names[mod_names[i]]
                module_paths.append(f"{module_paths[up]}.{short}" if up >= 0 else short)
                module_class.append(re.sub(r"_\d+$", "", short))
            mod_stack.append((s + du, pid))

    dev_op = np.full(len(rt_idx), -2, dtype=np.int64)
    found = rt_idx >= 0
    dev_op[found] = op_of_rt[rt_idx[found]]
    self_host = np.maximum(ops["dur"] - child_time, 0.0)
    return Attribution(dev_op=dev_op, dev_rt=rt_idx, dev_launch_ts=launch_ts, op_parent=parent, op_self_host=self_host,
                       op_module=op_module, op_order=op_order, module_paths=module_paths, module_class=module_class)


# ---------------------------------------------------------------- figures from one attributed trace

def _device_work(d: TraceData, a: Attribution) -> tl.DeviceWork:
    dev = d.device
    comm = _named(d, dev["name"], lambda n: bool(COMM_KERNEL.search(n))) & (dev["kind"] == 0)
    # host calls that block (synchronize, blocking copies) and GPU-side waits: the "sync" cause of idle time
    rt = d.runtime
    is_sync = _named(d, rt["name"], tl.is_sync_call)
    ss = np.concatenate([rt["ts"][is_sync], d.gpu_syncs["ts"]])
    se = np.concatenate([rt["ts"][is_sync] + rt["dur"][is_sync], d.gpu_syncs["ts"] + d.gpu_syncs["dur"]])
    ss, se = tl.union(ss, se)
    return tl.DeviceWork(ts=dev["ts"], end=dev["ts"] + dev["dur"], kind=dev["kind"], comm=comm,
                         launch_ts=a.dev_launch_ts, sync_ts=ss, sync_end=se)


def _named(d: TraceData, name_ids: np.ndarray, test) -> np.ndarray:
    """test(name) per event, evaluated once per distinct name (a lookup table: np.unique would import numpy.ma)."""
    table = np.zeros(len(d.names), dtype=bool)
    for i in set(name_ids.tolist()):
        table[i] = test(d.names[i])
    return table[name_ids]


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
    per = [tl.breakdown(work, lo, hi) for lo, hi in windows]
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
    return tl.breakdown(_device_work(d, a), float(dev["ts"].min()), float((dev["ts"] + dev["dur"]).max()))


def _op_label(d: TraceData, a: Attribution, names: list[str]) -> list[str]:
    """The launching operator's name per device event (or why there is none)."""
    op_names, rt_names = d.ops["name"].tolist(), d.runtime["name"].tolist()
    return [names[op_names[o]] if o >= 0 else NO_OPERATOR.format(names[rt_names[r]]) if o == -1 else UNATTRIBUTED
            for o, r in zip(a.dev_op.tolist(), a.dev_rt.tolist())]


def operator_stats(d: TraceData, a: Attribution, on_gpu: bool, only: np.ndarray | None = None) -> list[OpStat]:
    """Per operator name, totals over the trace: calls, self host time, self/inclusive device time, copies.

    `only` (a mask over op events) keeps the ops of one part of the trace, e.g. under one annotation; device work
    without an operator is then left out.
    """
    ops, dev, names = d.ops, d.device, d.names
    dev_self, trans_self = _device_per_op(d, a)  # kernels and memsets; memcpy
    is_copy = dev["kind"] == 1
    incl = dev_self + trans_self
    for i in reversed(a.op_order):  # children after parents in the sweep: add each op into its parent
        p = a.op_parent[i]
        if p >= 0:
            incl[p] += incl[i]
    sel = slice(None) if only is None else only
    by_name = ops["name"][sel]  # name ids index the sums directly
    sums = lambda w: np.bincount(by_name, weights=w[sel], minlength=len(names)) / 1e3  # noqa: E731 - us -> ms
    calls = np.bincount(by_name, minlength=len(names))
    host, device, trans = sums(a.op_self_host), sums(dev_self), sums(trans_self)
    total = sums(incl) if on_gpu else sums(ops["dur"])
    flops = np.bincount(by_name, weights=ops["flops"][sel], minlength=len(names))
    out = []
    for j in np.flatnonzero(calls).tolist():
        name = names[j]
        shapes = [s for s, _ in d.shapes.get(j, Counter()).most_common(5)]
        if on_gpu:
            exec_ms, trans_ms = float(device[j]), float(trans[j])
        else:  # host time is the timing device; copies on the host are data movement, as for a live CPU run
            exec_ms, trans_ms = (0.0, float(host[j])) if name in TRANSFER_OPS else (float(host[j]), 0.0)
        out.append(OpStat(name=name, calls=float(calls[j]), exec_ms=exec_ms, trans_ms=trans_ms, host_ms=float(host[j]),
                          device_ms=float(device[j]), total_ms=float(total[j]), flops=float(flops[j]),
                          input_shapes=shapes, category="transfer" if trans_ms > exec_ms else "compute"))
    # device work with no operator to carry it: its own rows, so the sums still reconcile
    orphan: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    labels = _op_label(d, a, names) if only is None else []
    for o, lab, du, cp in zip(a.dev_op.tolist(), labels, dev["dur"].tolist(), is_copy.tolist()):
        if o < 0:
            r = orphan[lab]
            r[0] += 1
            r[2 if cp else 1] += du / 1e3
    for lab, (c, k, t) in orphan.items():
        out.append(OpStat(name=lab, calls=float(c), exec_ms=k, trans_ms=t, device_ms=k, total_ms=k + t,
                          category="transfer" if t > k else "compute"))
    out.sort(key=lambda o: o.exec_ms + o.trans_ms, reverse=True)
    return out


def kernel_stats(d: TraceData, a: Attribution) -> list[KernelStat]:
    dev, names = d.device, d.names
    acc: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0])
    labels = _op_label(d, a, names)
    for kind, n, du, op in zip(dev["kind"].tolist(), dev["name"].tolist(), dev["dur"].tolist(), labels):
        if kind == 1:
            continue
        r = acc[(kind, n, op)]
        r[0] += 1
        r[1] += du
    out = [KernelStat(name=names[n], calls=float(c), time_ms=t / 1e3, op=op, kind="memset" if kind == 2 else "kernel",
                      comm=bool(kind == 0 and COMM_KERNEL.search(names[n])))
           for (kind, n, op), (c, t) in acc.items()]
    out.sort(key=lambda k: k.time_ms, reverse=True)
    return out


def transfer_stats(d: TraceData, a: Attribution) -> list[TransferStat]:
    """Memcpy by direction (H2D, D2H, D2D, P2P): calls, bytes, time, achieved GB/s, and the issuing operators."""
    dev, names = d.device, d.names
    copy = dev["kind"] == 1
    labels = _op_label(d, a, names)
    acc: dict[str, dict] = defaultdict(lambda: {"calls": 0, "bytes": 0.0, "us": 0.0, "ops": Counter()})
    for n, b, du, op, c in zip(dev["name"].tolist(), dev["bytes"].tolist(), dev["dur"].tolist(), labels, copy.tolist()):
        if not c:
            continue
        r = acc[memcpy_direction(names[n])]
        r["calls"] += 1
        r["bytes"] += b
        r["us"] += du
        r["ops"][op] += du / 1e3
    out = [TransferStat(direction=k, calls=float(r["calls"]), bytes=r["bytes"], time_ms=r["us"] / 1e3,
                        bandwidth_gbps=r["bytes"] / (r["us"] * 1e3) if r["us"] > 0 else 0.0, label=TRANSFER_LABEL,
                        op_ms=dict(r["ops"].most_common()))
           for k, r in acc.items()]
    out.sort(key=lambda t: t.time_ms, reverse=True)
    return out


def module_graph(d: TraceData, a: Attribution, ops: tuple[np.ndarray, np.ndarray] | None, on_gpu: bool) -> Graph:
    """The module tree from nn.Module frames: one node per module path with the self time of the ops inside it."""
    if not a.module_paths:
        return Graph(method="none", note="the trace has no nn.Module frames (record with with_stack=True or "
                                         "with_modules=True to get a module tree)")
    n = len(a.module_paths)
    exec_us, trans_us = np.zeros(n), np.zeros(n)
    has = a.op_module >= 0
    if ops is not None:
        np.add.at(exec_us, a.op_module[has], ops[0][has])
        np.add.at(trans_us, a.op_module[has], ops[1][has])
    nodes, prev = [], None
    for pid in range(n):  # path ids are numbered in first-seen order
        path = a.module_paths[pid]
        nodes.append(GraphNode(id=path, op=a.module_class[pid], kind="module", module=path,
                               inputs=[prev] if prev else [], exec_ms=float(exec_us[pid]) / 1e3,
                               trans_ms=float(trans_us[pid]) / 1e3))
        prev = path
    timed = [x for x in nodes if x.exec_ms + x.trans_ms > 0]
    return Graph(method="module-tree", nodes=nodes, timed_nodes=len(timed), exec_ms=sum(x.exec_ms for x in nodes),
                 trans_ms=sum(x.trans_ms for x in nodes),
                 note="from the trace's nn.Module frames; totals over the trace; edges follow execution order, "
                      f"time is the {'device' if on_gpu else 'host'} self time of the operators inside each module")


def _per_op_time(d: TraceData, a: Attribution, on_gpu: bool) -> tuple[np.ndarray, np.ndarray]:
    """Self exec and trans time (us) per op event, for the module tree."""
    if on_gpu:
        return _device_per_op(d, a)
    is_t = _named(d, d.ops["name"], lambda nm: nm in TRANSFER_OPS)
    return np.where(is_t, 0.0, a.op_self_host), np.where(is_t, a.op_self_host, 0.0)


def _device_per_op(d: TraceData, a: Attribution) -> tuple[np.ndarray, np.ndarray]:
    """Device time (us) each op event launched: kernels and memsets, and memcpy."""
    n, dev = len(d.ops["ts"]), d.device
    work, copies = np.zeros(n), np.zeros(n)
    launched, copy = a.dev_op >= 0, dev["kind"] == 1
    np.add.at(work, a.dev_op[launched & ~copy], dev["dur"][launched & ~copy])
    np.add.at(copies, a.dev_op[launched & copy], dev["dur"][launched & copy])
    return work, copies


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


def _rank_of(d: TraceData, default: int) -> int:
    r = (d.metadata.get("distributedInfo") or {}).get("rank")
    return int(r) if isinstance(r, int) else default


@dataclass
class HostSteps:
    """A CPU-only rank's step figures, per step (ms): the host's own version of the GPU timeline's."""

    steps: int
    window_ms: float  # the mean ProfilerStep duration, as GpuTimeline.window_ms is the mean GPU step window
    busy_ms: float
    computation_ms: float
    comm_ms: float
    exposed_comm_ms: float


def host_steps(d: TraceData) -> HostSteps | None:
    """Per-step figures of a trace without device activity: the window is the host ProfilerStep; computation is the
    union of operators on the thread that runs the steps (a collective's wait is idle time there, not an operator);
    communication is the union of the host collectives (gloo's annotations, on its own threads). None without
    steps."""
    st = d.cpu_steps
    if not len(st.get("ts", ())):
        return None
    lo, hi = st["ts"], st["ts"] + st["dur"]
    ops = d.ops
    starts, ends, threads = ops["ts"], ops["ts"] + ops["dur"], ops["thread"]
    inside = (starts < hi.max()) & (ends > lo.min())
    if not inside.any():
        return None
    # the stepping thread: the one whose operators cover most of the step windows
    main = max(np.unique(threads[inside]), key=lambda t: tl.length(starts[inside & (threads == t)],
                                                                    ends[inside & (threads == t)]))
    cs, ce = tl.union(starts[threads == main], ends[threads == main])
    hc = d.host_comm
    ms, me = tl.union(hc["ts"], hc["ts"] + hc["dur"]) if len(hc.get("ts", ())) else (np.array([]), np.array([]))
    comp = comm = busy = exposed = 0.0
    for a, b in zip(lo, hi):
        c = tl.clip(cs, ce, a, b)
        m = tl.clip(ms, me, a, b)
        comp += tl.length(*c)
        comm += tl.length(*m)
        both = tl.length(np.concatenate([c[0], m[0]]), np.concatenate([c[1], m[1]]))
        busy += both
        exposed += both - tl.length(*c)  # communication time not covered by computation
    n = len(lo)
    return HostSteps(steps=n, window_ms=float((hi - lo).mean()) / 1e3, busy_ms=busy / n / 1e3,
                     computation_ms=comp / n / 1e3, comm_ms=comm / n / 1e3, exposed_comm_ms=exposed / n / 1e3)


def rank_stats(datas: list[TraceData], timelines: list[GpuTimeline | None]) -> list[RankStat]:
    """Per-rank step time, communication and its overlap; stragglers by computation time against the median rank.
    Ranks without device activity (CPU-only jobs, gloo) get the same figures from the host (host_steps)."""
    figures = [g if g is not None else host_steps(d) for d, g in zip(datas, timelines)]
    comps = [f.computation_ms for f in figures if f is not None]
    median = statistics.median(comps) if comps else 0.0
    out = []
    for i, (d, f) in enumerate(zip(datas, figures)):
        if f is None:
            out.append(RankStat(rank=_rank_of(d, i), file=Path(d.path).name, steps=0, step_ms=0.0, busy_ms=0.0,
                                computation_ms=0.0, comm_ms=0.0, exposed_comm_ms=0.0, overlap=0.0,
                                note="no device activity and no profiler steps"))
            continue
        slow = len(comps) > 1 and median > 0 and f.computation_ms > STRAGGLER * median
        notes = [f"computation {f.computation_ms / median:.2f}x the median rank"] if slow else []
        if isinstance(f, HostSteps):
            notes.append("host figures (no device activity)")
        out.append(RankStat(rank=_rank_of(d, i), file=Path(d.path).name, steps=f.steps, step_ms=f.window_ms,
                            busy_ms=f.busy_ms, computation_ms=f.computation_ms,
                            comm_ms=f.comm_ms, exposed_comm_ms=f.exposed_comm_ms,
                            overlap=(1 - f.exposed_comm_ms / f.comm_ms) if f.comm_ms > 0 else 0.0, straggler=slow,
                            note="; ".join(notes)))
    return sorted(out, key=lambda r: r.rank)


@dataclass
class TraceFigures:
    """Per-operator, kernel and transfer figures of one trace (totals over it) and its GPU timeline (per step)."""

    ops: list[OpStat]
    transfers: list[TransferStat]
    kernels: list[KernelStat]
    gpu: GpuTimeline | None
    # per OpLens annotation in a live run's trace (oplens.prefill -> "prefill"): the operators inside it
    tagged: dict[str, list[OpStat]] = field(default_factory=dict)

    def per_step(self, steps: int) -> TraceFigures:
        """The totals divided by `steps` (a live run's recorded inferences); the timeline is per step already."""
        n = max(1, steps)

        def ops(stats: list[OpStat]) -> list[OpStat]:
            return [replace(o, calls=o.calls / n, exec_ms=o.exec_ms / n, trans_ms=o.trans_ms / n, host_ms=o.host_ms / n,
                            device_ms=o.device_ms / n, total_ms=o.total_ms / n, flops=o.flops / n) for o in stats]

        return TraceFigures(
            ops=ops(self.ops),
            transfers=[replace(t, calls=t.calls / n, bytes=t.bytes / n, time_ms=t.time_ms / n,
                               op_ms={k: v / n for k, v in t.op_ms.items()}, label=STEP_TRANSFER_LABEL)
                       for t in self.transfers],
            kernels=[replace(k, calls=k.calls / n, time_ms=k.time_ms / n) for k in self.kernels],
            gpu=self.gpu, tagged={tag: ops(stats) for tag, stats in self.tagged.items()})


def figures(d: TraceData, a: Attribution) -> TraceFigures:
    """The one place per-op, kernel, transfer and GPU-timeline figures come from, for imported traces and live runs
    alike (a live run reads its own trace here); device figures only when the trace has device events."""
    on_gpu = bool(len(d.device["ts"]))
    return TraceFigures(ops=operator_stats(d, a, on_gpu), transfers=transfer_stats(d, a) if on_gpu else [],
                        kernels=kernel_stats(d, a) if on_gpu else [], gpu=gpu_timeline(d, a) if on_gpu else None,
                        tagged=_tagged_operator_stats(d, a, on_gpu))


def _tagged_operator_stats(d: TraceData, a: Attribution, on_gpu: bool) -> dict[str, list[OpStat]]:
    """operator_stats of the ops inside each OpLens annotation (all annotations of one name together)."""
    tags, ops = d.live_tags, d.ops
    inside: dict[str, np.ndarray] = {}
    for n, s, du, t in zip(tags["name"].tolist(), tags["ts"].tolist(), tags["dur"].tolist(), tags["thread"].tolist()):
        mask = inside.setdefault(d.names[n][len(LIVE_TAG):], np.zeros(len(ops["ts"]), dtype=bool))
        mask |= (ops["thread"] == t) & (ops["ts"] >= s) & (ops["ts"] + ops["dur"] <= s + du)
    return {tag: operator_stats(d, a, on_gpu, only=mask) for tag, mask in inside.items()}


def trace_figures(path: str | Path) -> TraceFigures:
    """figures() of one trace file; TraceFormatError when it is not a readable trace."""
    d = load(Path(path))
    return figures(d, attribute(d))


SGLANG_STEP = re.compile(r"step\[(EXTEND|PREFILL|MIXED|DECODE)\b([^\]]*)\]")
VLLM_STEP = re.compile(r"execute_(\d+)_context_(\d+)(?:\([^)]*\))?_generation_(\d+)")
SGLANG_PHASE = {"EXTEND": "prefill", "PREFILL": "prefill", "MIXED": "prefill", "DECODE": "decode"}


def _sglang_mark(name: str) -> tuple[str, int | None, int | None] | None:
    m = SGLANG_STEP.match(name)
    if not m:
        return None
    fields = dict(re.findall(r"(\w+)=(\d+)", m.group(2)))
    bs = int(fields["bs"]) if "bs" in fields else None
    toks = int(fields["toks"]) if "toks" in fields else (bs if m.group(1) == "DECODE" else None)
    return SGLANG_PHASE[m.group(1)], bs, toks


def _vllm_mark(name: str) -> tuple[str, int | None, int | None] | None:
    """vLLM's execute_<tokens>_context_<prefill reqs>(...)_generation_<decode reqs>(...): a step with any prefill
    request is a prefill (chunked-prefill steps mix both); its batch is all requests."""
    m = VLLM_STEP.match(name)
    if not m:
        return None
    tokens, context, generation = (int(g) for g in m.groups())
    return ("prefill" if context else "decode"), context + generation, tokens


PHASE_PARSERS = {"sglang": _sglang_mark, "vllm": _vllm_mark}


def serving_phases(d: TraceData, a: Attribution | None = None, top: int = 5) -> list[ServingPhase]:
    """Prefill and decode steps from a serving engine's annotations, with batch size, tokens, kernel time and top
    kernels per phase. One engine's annotations are used (SGLang's first): both name the same steps. A kernel belongs
    to the last step annotation begun before it was launched (its own start when the launch is not in the trace)."""
    marks = d.phase_marks
    if not marks or not len(marks.get("ts", [])):
        return []
    for source, parse in PHASE_PARSERS.items():
        steps = sorted((float(ts), parsed) for n, ts in zip(marks["name"].tolist(), marks["ts"].tolist())
                       if (parsed := parse(d.names[n])) is not None)
        if steps:
            break
    else:
        return []
    a = a or attribute(d)
    dev = d.device
    kernel = dev["kind"] == 0
    when = np.where(np.isnan(a.dev_launch_ts), dev["ts"], a.dev_launch_ts)[kernel]
    starts = np.array([s[0] for s in steps])
    owner = np.searchsorted(starts, when, side="right") - 1  # -1: before the first step
    names, durs = dev["name"][kernel], dev["dur"][kernel]
    out = []
    for phase in ("prefill", "decode"):
        idx = [i for i, s in enumerate(steps) if s[1][0] == phase]
        if not idx:
            continue
        mine = np.isin(owner, idx)
        per: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
        for n, du in zip(names[mine].tolist(), durs[mine].tolist()):
            per[n][0] += 1
            per[n][1] += du
        top_k = sorted(per.items(), key=lambda kv: -kv[1][1])[:top]
        bs = [steps[i][1][1] for i in idx if steps[i][1][1] is not None]
        toks = [steps[i][1][2] for i in idx if steps[i][1][2] is not None]
        out.append(ServingPhase(
            name=phase, steps=len(idx), batch_size=max(bs) if bs else None, tokens=sum(toks) if toks else None,
            kernel_ms=float(durs[mine].sum()) / 1e3, source=source,
            top_kernels=[KernelStat(name=d.names[n], calls=float(c), time_ms=t / 1e3, op="") for n, (c, t) in top_k]))
    return out


def import_trace(path: str | Path | list, allow_any: bool = False) -> ProfileRun:
    """Turn one trace file (or several: the ranks of one job) into a ProfileRun with model.source "trace".

    Unless allow_any, files must lie in the data directories and within the size limit (profiler.policy);
    TraceFormatError otherwise, and for anything that is not a readable trace.
    """
    files = [Path(p) for p in (path if isinstance(path, (list, tuple)) else [path])]
    if not files:
        raise TraceFormatError("no trace file given")
    for f in files:
        if not allow_any:
            try:
                policy.check_size(policy.confine(f, "trace"), "trace")
            except policy.PolicyError as exc:
                raise TraceFormatError(str(exc)) from None
    datas = [load(f) for f in files]
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
    )
