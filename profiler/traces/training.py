"""Where a training step's time and memory go: pure functions over a training trace's arrays (profiler.traces) and a
memory timeline's samples, for live runs, the recorder and imported training traces alike.

Per step (a ProfilerStep#N window on the host):
- phases, from OpLens's markers (oplens.data / forward / backward / optimizer, or torch's own
  enumerate(DataLoader)#... annotation for the data wait): each phase's time inside the step; "other" is the rest
  (zero_grad, Python, the profiler's step mark), so the phases add up to the step's wall time.
- categories, TensorBoard's profiler plugin's, by priority: kernel > memcpy > memset > communication > runtime >
  DataLoader > CPU exec > other. Each instant of the step counts once, for the first category active then, so they
  add up to the step's wall time too. On a CPU only DataLoader, CPU exec (operators on the stepping thread),
  communication (gloo) and other occur.
Input-bound: the median data wait is at least INPUT_BOUND_SHARE of the median step.
"""
from __future__ import annotations

import re
import statistics

import numpy as np

from profiler.schema import MemoryTimeline, Spread, TrainStep
from profiler.traces import timeline as tl
from profiler.traces.attribution import COMM_KERNEL, _named
from profiler.traces.columns import LIVE_TAG, TraceData

PHASES = ("data", "forward", "backward", "optimizer")
CATEGORIES = ("kernel", "memcpy", "memset", "communication", "runtime", "DataLoader", "CPU exec", "other")
INPUT_BOUND_SHARE = 0.20  # a step waiting this share of its time for the next batch is input-bound
MAX_MEMORY_POINTS = 400


BACKWARD_OPS = "autograd::engine::evaluate_function"  # the autograd engine's per-node events: the backward pass
# the autograd nodes themselves (AddmmBackward0; 2021-era traces: CudnnConvolutionBackward, ReluBackward1), which
# older profilers record without the engine's events
AUTOGRAD_NODE = re.compile(r"[A-Za-z0-9_]+Backward\d*")


def _backward(name: str) -> bool:
    return name.startswith(BACKWARD_OPS) or bool(AUTOGRAD_NODE.fullmatch(name))


def _tag_intervals(d: TraceData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Intervals per phase: OpLens's markers, else torch's own (enumerate(DataLoader), Optimizer.step, the autograd
    engine's events for backward, the stepping thread's other operators for forward)."""
    tags = d.live_tags
    out = {}
    names = np.array([d.names[n] for n in tags["name"].tolist()], dtype=object)
    for phase in PHASES:
        sel = names == LIVE_TAG + phase
        out[phase] = (tags["ts"][sel], tags["ts"][sel] + tags["dur"][sel])
    ops = d.ops
    main = ops["thread"] == _stepping_thread(d)
    if not len(out["backward"][0]):  # on any thread: a GPU job's backward runs on autograd's own thread
        back = _named(d, ops["name"], _backward)
        out["backward"] = (ops["ts"][back], ops["ts"][back] + ops["dur"][back])
    if not len(out["forward"][0]):  # what is left of the stepping thread's operators (priority: see steps())
        out["forward"] = (ops["ts"][main], ops["ts"][main] + ops["dur"][main])
    return out


def _category_intervals(d: TraceData, tags: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Intervals per category, in CATEGORIES' priority order (other excluded: it is what is left)."""
    dev, rt, ops = d.device, d.runtime, d.ops
    comm = _named(d, dev["name"], lambda n: bool(COMM_KERNEL.search(n))) & (dev["kind"] == 0)
    ends = dev["ts"] + dev["dur"]

    def sel(mask):
        return dev["ts"][mask], ends[mask]
    hc = d.host_comm
    host_comm = (hc["ts"], hc["ts"] + hc["dur"]) if len(hc.get("ts", ())) else (np.zeros(0), np.zeros(0))
    comm_iv = (np.concatenate([sel(comm)[0], host_comm[0]]), np.concatenate([sel(comm)[1], host_comm[1]]))
    main = _stepping_thread(d)
    on_main = ops["thread"] == main
    return [sel((dev["kind"] == 0) & ~comm), sel(dev["kind"] == 1), sel(dev["kind"] == 2), comm_iv,
            (rt["ts"], rt["ts"] + rt["dur"]), tags["data"],
            (ops["ts"][on_main], ops["ts"][on_main] + ops["dur"][on_main])]


def _stepping_thread(d: TraceData) -> int:
    """The thread that runs the steps: the one with torch's or OpLens's phase marks (the DataLoader's next batch,
    the optimizer's step), else the one whose operators cover most time (ties: the first). A GPU job's autograd
    thread can hold more operator time than the loop's own."""
    ops, tags = d.ops, d.live_tags
    if len(tags.get("thread", ())):
        return int(tags["thread"][0])
    if not len(ops["ts"]):
        return -1
    threads = np.unique(ops["thread"])
    return int(max(threads, key=lambda t: float(ops["dur"][ops["thread"] == t].sum())))


def by_priority(intervals: list[tuple[np.ndarray, np.ndarray]], lo: float, hi: float) -> list[float]:
    """Time (us) of each category in [lo, hi], each instant counted once for the first category active then; the
    last entry is the rest of the window."""
    out, so_far_s, so_far_e, covered = [], np.zeros(0), np.zeros(0), 0.0
    for s, e in intervals:
        s, e = tl.clip(s, e, lo, hi)
        so_far_s, so_far_e = np.concatenate([so_far_s, s]), np.concatenate([so_far_e, e])
        now = tl.length(so_far_s, so_far_e)
        out.append(now - covered)
        covered = now
    out.append(max(0.0, (hi - lo) - covered))
    return out


def steps(d: TraceData, losses: list[float] | None = None) -> list[TrainStep]:
    """Every ProfilerStep of a training trace: wall time, phases and categories (ms)."""
    tags = _tag_intervals(d)
    cats = _category_intervals(d, tags)
    st = d.cpu_steps
    order = np.argsort(st["ts"], kind="stable")
    out = []
    for i, j in enumerate(order.tolist()):
        lo, hi = float(st["ts"][j]), float(st["ts"][j] + st["dur"][j])
        # each instant once: the data wait, then the optimizer, backward and forward (forward may be "every other
        # operator" when the loop has no OpLens markers)
        order = ("data", "optimizer", "backward", "forward")
        times = by_priority([tags[p] for p in order], lo, hi)
        phases = {p: times[order.index(p)] / 1e3 for p in PHASES}
        phases["other"] = times[-1] / 1e3
        wall = (hi - lo) / 1e3
        categories = dict(zip(CATEGORIES, (v / 1e3 for v in by_priority(cats, lo, hi))))
        loss = losses[i] if losses and i < len(losses) else None
        out.append(TrainStep(wall_ms=wall, phases=phases, categories=categories, loss=loss))
    return out


def spread(values: list[float]) -> Spread:
    if not values:
        return Spread()
    xs = sorted(values)
    q = lambda f: xs[min(len(xs) - 1, int(f * (len(xs) - 1) + 0.5))]  # noqa: E731 - nearest rank
    return Spread(median=statistics.median(xs), mean=statistics.fmean(xs), p10=q(0.1), p90=q(0.9), p99=q(0.99),
                  iqr=q(0.75) - q(0.25), n=len(xs))


def medians(steps_: list[TrainStep], field: str) -> dict[str, float]:
    keys = list(getattr(steps_[0], field)) if steps_ else []
    return {k: statistics.median(getattr(s, field)[k] for s in steps_) for k in keys}


def input_verdict(phases: dict[str, float], wall_ms: float, workers: int | None = None,
                  pin_memory: bool | None = None) -> tuple[float, bool, str]:
    """(data share, input-bound, one line with the fix)."""
    share = phases.get("data", 0.0) / wall_ms if wall_ms > 0 else 0.0
    if share < INPUT_BOUND_SHARE:
        return share, False, (f"not input-bound: the step waits {share:.0%} of its time for the next batch (under "
                              f"{INPUT_BOUND_SHARE:.0%})")
    fixes = []
    if workers is not None and workers == 0:
        fixes.append("load batches in worker processes (DataLoader num_workers=2 or more)")
    elif workers is not None:
        fixes.append(f"more DataLoader workers than {workers}, or cheaper per-sample work")
    if pin_memory is False:
        fixes.append("pin_memory=True with non_blocking copies on a GPU")
    fixes.append("prefetch (prefetch_factor, persistent_workers=True) or precompute the transforms")
    return share, True, (f"input-bound: the step waits {share:.0%} of its time ({phases.get('data', 0.0):.3g} ms) "
                         f"for the next batch (threshold {INPUT_BOUND_SHARE:.0%}); " + "; ".join(fixes))


def memory_timeline(device: str, times_us: list[float], columns: dict[str, list[float]], step_lo_us: float,
                    step_hi_us: float, tags: dict[str, list[tuple[float, float]]]) -> MemoryTimeline:
    """The memory in use by category over one step [lo, hi] (us, the trace's clock), thinned to MAX_MEMORY_POINTS;
    the peak, its time and the phase running then (`tags`: phase -> intervals)."""
    t = np.asarray(times_us, dtype=float)
    keep = (t >= step_lo_us) & (t <= step_hi_us)
    if not keep.any():
        keep = np.ones(len(t), dtype=bool)
    t = t[keep]
    cols = {k: np.asarray(v, dtype=float)[keep] for k, v in columns.items()}
    total = sum(cols.values()) if cols else np.zeros(len(t))
    if not len(t):
        return MemoryTimeline(device=device)
    i = int(np.argmax(total))
    peak_t = float(t[i])
    phase = next((p for p, ivs in tags.items() if any(a <= peak_t <= b for a, b in ivs)), "other")
    idx = np.unique(np.concatenate([np.linspace(0, len(t) - 1, min(len(t), MAX_MEMORY_POINTS)).astype(int), [i]]))
    return MemoryTimeline(device=device, times_ms=((t[idx] - t[0]) / 1e3).tolist(),
                          bytes={k: v[idx].tolist() for k, v in cols.items()}, peak_bytes=float(total[i]),
                          peak_ms=(peak_t - t[0]) / 1e3, peak_phase=phase,
                          peak_by_category={k: float(v[i]) for k, v in cols.items()})


def is_training(d: TraceData) -> bool:
    """A trace of training steps: profiler steps, and a backward pass or an optimizer step inside them."""
    if not len(d.cpu_steps["ts"]):
        return False
    tags = {d.names[n] for n in d.live_tags["name"].tolist()}
    if LIVE_TAG + "backward" in tags or LIVE_TAG + "optimizer" in tags:
        return True
    return bool(_named(d, d.ops["name"], _backward).any())


def from_trace(d: TraceData):
    """The Training of an imported trace of training steps (None for anything else)."""
    from profiler.schema import TrainConfig, Training

    if not is_training(d):
        return None
    steps_ = steps(d)
    walls = [s.wall_ms for s in steps_]
    phases = medians(steps_, "phases")
    share, bound, verdict = input_verdict(phases, statistics.median(walls))
    return Training(config=TrainConfig(steps=len(steps_), warmup=0, optimizer="(the trace's)", device=""),
                    steps=steps_, wall=spread(walls), phases=phases, categories=medians(steps_, "categories"),
                    data_share=share, input_bound=bound, verdict=verdict, source="trace")
