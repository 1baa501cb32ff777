"""Several ranks of one job: per-rank step time, computation, communication and its overlap, and stragglers; from
the GPU timeline, or from the host for CPU-only (gloo) jobs.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from profiler.schema import GpuTimeline, RankStat
from profiler.traces import timeline as tl
from profiler.traces.attribution import COMM_KERNEL
from profiler.traces.columns import TraceData

STRAGGLER = 1.05  # a rank whose computation exceeds the median rank's by 5% holds the others back
WAITED_SHARE = 0.10  # ... or one the others wait for, in collectives, this share of a step or more


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


def _collective_durations(d: TraceData) -> np.ndarray:
    """Durations (us) of a rank's collectives in launch order: communication kernels on a GPU, else gloo's host
    annotations."""
    dev = d.device
    if len(dev["ts"]):
        comm = np.array([bool(COMM_KERNEL.search(d.names[n])) for n in dev["name"].tolist()], dtype=bool)
        comm &= dev["kind"] == 0
        order = np.argsort(dev["ts"][comm], kind="stable")
        return dev["dur"][comm][order]
    hc = d.host_comm
    if not len(hc.get("ts", ())):
        return np.zeros(0)
    return hc["dur"][np.argsort(hc["ts"], kind="stable")]


def collective_split(datas: list[TraceData]) -> list[tuple[float, float, int]]:
    """Per rank: (transfer us, synchronization us, collectives matched). The i-th collective of every rank is one
    collective; its transfer time is the fastest rank's duration, the rest of each rank's duration is waiting for
    the others (TensorBoard's profiler plugin's split)."""
    durs = [_collective_durations(d) for d in datas]
    n = min((len(x) for x in durs), default=0)
    if n == 0 or len(datas) < 2:
        return [(float(x.sum()), 0.0, 0) for x in durs]
    matched = np.stack([x[:n] for x in durs])
    transfer = matched.min(axis=0)
    return [(float(transfer.sum()), float((row - transfer).sum()), n) for row in matched]


def rank_stats(datas: list[TraceData], timelines: list[GpuTimeline | None]) -> list[RankStat]:
    """Per-rank step time, communication and its overlap; stragglers by computation time against the median rank.
    Ranks without device activity (CPU-only jobs, gloo) get the same figures from the host (host_steps)."""
    figures = [g if g is not None else host_steps(d) for d, g in zip(datas, timelines)]
    comps = [f.computation_ms for f in figures if f is not None]
    median = statistics.median(comps) if comps else 0.0
    split = collective_split(datas)
    # the others wait for a straggler in every collective: per-step waiting of each rank (us per step)
    waits = [sync / f.steps if f is not None and f.steps else 0.0 for f, (_, sync, _) in zip(figures, split)]
    most = max(waits, default=0.0)
    # a rank the others wait for in the collectives, while it does not wait: when there is one, it is the straggler
    # (a CPU rank blocked in gloo's all-reduce counts that wait as operator time, so computation alone would also
    # flag the ranks that wait)
    waited_for = [len(datas) > 1 and f is not None and most / 1e3 > WAITED_SHARE * f.window_ms and w <= 0.25 * most
                  for f, w in zip(figures, waits)]
    out = []
    for i, (d, f, (transfer, sync, matched)) in enumerate(zip(datas, figures, split)):
        if f is None:
            out.append(RankStat(rank=_rank_of(d, i), file=Path(d.path).name, steps=0, step_ms=0.0, busy_ms=0.0,
                                computation_ms=0.0, comm_ms=0.0, exposed_comm_ms=0.0, overlap=0.0,
                                note="no device activity and no profiler steps"))
            continue
        slow = len(comps) > 1 and median > 0 and f.computation_ms > STRAGGLER * median and not any(waited_for)
        notes = [f"computation {f.computation_ms / median:.2f}x the median rank"] if slow else []
        if waited_for[i]:
            slow = True
            notes.append(f"the other ranks wait up to {most / 1e3:.3g} ms per step for it in collectives; it "
                         f"waits {waits[i] / 1e3:.3g} ms")
        if isinstance(f, HostSteps):
            notes.append("host figures (no device activity)")
        out.append(RankStat(rank=_rank_of(d, i), file=Path(d.path).name, steps=f.steps, step_ms=f.window_ms,
                            busy_ms=f.busy_ms, computation_ms=f.computation_ms,
                            comm_ms=f.comm_ms, exposed_comm_ms=f.exposed_comm_ms,
                            overlap=(1 - f.exposed_comm_ms / f.comm_ms) if f.comm_ms > 0 else 0.0, straggler=slow,
                            note="; ".join(notes), collectives=matched, comm_transfer_ms=transfer / f.steps / 1e3,
                            comm_sync_ms=sync / f.steps / 1e3))
    return sorted(out, key=lambda r: r.rank)
