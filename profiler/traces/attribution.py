"""Which operator launched each kernel, memcpy and memset, and the per-operator, per-kernel and per-transfer
figures that follow.


Attribution (as HTA and TraceLens do it): a kernel, memcpy or memset shares a correlation id with the runtime call that
launched it; its operator is the innermost cpu_op on the launching thread whose interval encloses that call. Device
work whose launch is not in the trace (queued before recording started) is reported as unattributed, never guessed.
Operator, kernel and transfer figures are totals over the whole trace; the GPU timeline is per profiler step.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from profiler.op_categories import TRANSFER_OPS
from profiler.schema import Graph, GraphNode, KernelStat, OpStat, TransferStat
from profiler.traces.columns import TraceData
from profiler.traces.read import memcpy_direction

UNATTRIBUTED = "(unattributed: launch not in trace)"
NO_OPERATOR = "(no operator: {})"  # launched by a runtime call no cpu_op encloses, e.g. a CUDA graph replay
# communication kernels: NCCL/RCCL, and the all-reduces that bypass them (torch symmetric memory, vLLM custom all-
# reduce)
COMM_KERNEL = re.compile(r"nccl|rccl|multimem_all_reduce|one_shot_all_reduce|two_shot_all_reduce|cross_device_reduce",
                         re.IGNORECASE)
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
    overlaps: int = 0  # ops that end after the op enclosing their start (broken nesting): clipped to it


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
    cur, overlaps = None, 0
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
                end, p = op_stack[-1]
                parent[i] = p
                overlaps += s + du > end  # a slice past its parent's end: only the part inside is the parent's
                child_time[p] += min(du, end - s)
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
                       op_module=op_module, op_order=op_order, module_paths=module_paths, module_class=module_class,
                       overlaps=overlaps)



def _op_label(d: TraceData, a: Attribution, names: list[str]) -> list[str]:
    """The launching operator's name per device event (or why there is none)."""
    op_names, rt_names = d.ops["name"].tolist(), d.runtime["name"].tolist()
    return [names[op_names[o]] if o >= 0 else NO_OPERATOR.format(names[rt_names[r]]) if o == -1 else UNATTRIBUTED
            for o, r in zip(a.dev_op.tolist(), a.dev_rt.tolist())]


def operator_stats(d: TraceData, a: Attribution, on_gpu: bool, only: np.ndarray | None = None,
                   work: dict[str, tuple[float, float, bool, str]] | None = None) -> list[OpStat]:
    """Per operator name, totals over the trace: calls, self host time, self/inclusive device time, copies; with
    `work` (profiler.traces.calls.per_name), FLOPs, bytes, whether they are known, and the dtype.

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
        stat = OpStat(name=name, calls=float(calls[j]), exec_ms=exec_ms, trans_ms=trans_ms, host_ms=float(host[j]),
                      device_ms=float(device[j]), total_ms=float(total[j]), flops=float(flops[j]),
                      input_shapes=shapes, category="transfer" if trans_ms > exec_ms else "compute")
        if work is not None and name in work:
            stat.flops, stat.bytes, stat.flops_known, stat.dtype = work[name]
        out.append(stat)
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


def _named(d: TraceData, name_ids: np.ndarray, test) -> np.ndarray:
    """test(name) per event, evaluated once per distinct name (a lookup table: np.unique would import numpy.ma)."""
    table = np.zeros(len(d.names), dtype=bool)
    for i in set(name_ids.tolist()):
        table[i] = test(d.names[i])
    return table[name_ids]
