"""One pass over a trace file into compact arrays: only what an import needs, never the raw events.

A 54 MB trace holds ~216k events as JSON; as Python dicts it would take gigabytes. Each event is read, the few fields
the analysis uses are appended to typed arrays (names interned once), and the dict is dropped. Everything skipped is
counted with the reason, for the validation report.
"""
from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from profiler.traces import work
from profiler.traces.read import STEP_PREFIX, TraceStream

# raw category (lower-cased) -> what OpLens does with it; both Kineto conventions (2021 and current)
KIND = {
    "cpu_op": "op", "operator": "op",
    "cuda_runtime": "runtime", "runtime": "runtime", "cuda_driver": "runtime", "hip_runtime": "runtime",
    "kernel": "kernel", "gpu_memcpy": "memcpy", "memcpy": "memcpy", "gpu_memset": "memset", "memset": "memset",
    "user_annotation": "annotation", "gpu_user_annotation": "gpu_annotation",
    "python_function": "python", "python": "python",
    "cuda_sync": "gpu_sync",
    # known, and not needed for the figures an import reports
    "trace": "ignore", "overhead": "ignore", "cpu_instant_event": "ignore", "ac2g": "ignore", "async": "ignore",
    "cuda_profiler_range": "ignore",
}
IGNORED_WHY = {
    "trace": "the profiler's own span", "overhead": "profiler overhead (activity buffer requests)",
    "cpu_instant_event": "instant markers", "cuda_profiler_range": "profiler range markers",
}
DEVICE_KIND = {"kernel": 0, "memcpy": 1, "memset": 2}
MODULE_PREFIX = "nn.Module: "
PHASE_PREFIXES = ("step[", "execute_")  # serving engines' per-step annotations (SGLang, vLLM)
# host-side collectives (gloo's own annotations on its worker threads): the communication of a CPU-only rank
HOST_COMM_PREFIXES = ("gloo:", "mpi:", "ucc:")
LIVE_TAG = "oplens."  # OpLens's own annotations in a live run's trace (oplens.prefill, oplens.decode, ...)
# torch's annotations of a training loop's phases: the DataLoader's next batch, the optimizer's step and zero_grad
TORCH_PHASES = ("enumerate(DataLoader)", "Optimizer.step#", "Optimizer.zero_grad#")
SHAPES_PER_OP = 64  # input shapes sampled per operator name: enough for the most frequent few
# distinct call signatures (dims, dtypes, concrete arguments) kept per operator name; calls beyond it have their work
# computed on the spot and are pooled as "(other shapes)": memory stays bounded by distinct ops, not events
SIGNATURES_PER_OP = 2048


@dataclass
class Skipped:
    count: int
    why: str


@dataclass
class TraceData:
    """The arrays one trace file contributes: operators, module frames, runtime calls, device activity, steps."""

    path: str
    metadata: dict
    names: list[str]
    ops: dict[str, np.ndarray]  # name, ts, dur, thread, flops
    modules: dict[str, np.ndarray]  # name, ts, dur, thread
    runtime: dict[str, np.ndarray]  # name, ts, dur, thread, corr
    device: dict[str, np.ndarray]  # kind (0 kernel, 1 memcpy, 2 memset), name, ts, dur, device, stream, corr, bytes
    cpu_steps: dict[str, np.ndarray]  # name, ts, dur
    gpu_steps: dict[str, np.ndarray]
    gpu_syncs: dict[str, np.ndarray]  # ts, dur: GPU-side waits (cuda_sync)
    shapes: dict[int, Counter] = field(default_factory=dict)  # op name id -> input shapes seen
    # distinct recorded calls: (op name id, Call); ops["call"] indexes it (-1: nothing recorded, -2: past the cap)
    calls: list = field(default_factory=list)
    overflow: dict[int, object] = field(default_factory=dict)  # op event index -> Work, for calls past the cap
    read: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, Skipped] = field(default_factory=dict)
    events: int = 0
    # serving engines' phase annotations (SGLang step[EXTEND|DECODE ...], vLLM execute_...): name, ts, dur
    phase_marks: dict[str, np.ndarray] = field(default_factory=dict)
    host_comm: dict[str, np.ndarray] = field(default_factory=dict)  # ts, dur: host collectives (HOST_COMM_PREFIXES)
    live_tags: dict[str, np.ndarray] = field(default_factory=dict)  # OpLens's annotations: name, ts, dur, thread


def _cols(spec: str) -> dict[str, array]:
    return {k: array(t) for k, t in (c.split(":") for c in spec.split())}


def load(path: str | Path, progress: Callable[[float], None] | None = None) -> TraceData:
    """Stream `path` once into a TraceData; TraceFormatError (from the reader) when it is not a readable trace.
    `progress(share)` is called as the file is read (share of its bytes)."""
    stream = TraceStream(path, progress)
    names: dict[str, int] = {}
    threads: dict[tuple, int] = {}
    ops = _cols("name:i ts:d dur:d thread:i flops:d call:i")
    modules = _cols("name:i ts:d dur:d thread:i")
    runtime = _cols("name:i ts:d dur:d thread:i corr:q")
    device = _cols("kind:b name:i ts:d dur:d device:i stream:q corr:q bytes:d")
    cpu_steps, gpu_steps = _cols("name:i ts:d dur:d"), _cols("name:i ts:d dur:d")
    marks = _cols("name:i ts:d dur:d")
    tags = _cols("name:i ts:d dur:d thread:i")
    syncs = _cols("ts:d dur:d")
    host_comm = _cols("ts:d dur:d")
    shapes: dict[int, Counter] = defaultdict(Counter)
    read: Counter = Counter()
    skipped_ph: Counter = Counter()
    unknown: Counter = Counter()
    python_other = 0
    no_time = 0
    negative = 0
    kinds: dict = {}
    n = 0

    def intern(s) -> int:
        i = names.get(s)
        if i is None:
            i = names[s] = len(names)
        return i

    # the loop below runs once per event (hundreds of thousands): bound appends, no helper calls
    op_cols = [c.append for c in ops.values()]
    rt_cols = [c.append for c in runtime.values()]
    dev_cols = [c.append for c in device.values()]
    shape_count: Counter = Counter()
    recorder = _CallRecorder()

    def thread_of(pid, tid) -> int:
        key = (pid, str(tid))  # the 2021 convention writes a thread id as "25738" in one place and 25738 in another
        t = threads.get(key)
        if t is None:
            t = threads[key] = len(threads)
        raw_threads[(pid, tid)] = t
        return t

    raw_threads: dict = {}
    for e in stream:
        n += 1
        if type(e) is not dict:
            skipped_ph["not an object"] += 1
            continue
        ph = e.get("ph")
        if ph != "X":
            skipped_ph[ph] += 1
            continue
        cat = e.get("cat")
        kind = kinds.get(cat)
        if kind is None:
            kind = kinds[cat] = KIND.get(str(cat).lower(), "unknown")
        if kind == "ignore" or kind == "unknown":
            (unknown if kind == "unknown" else read)[str(cat).lower()] += 1
            continue
        try:
            ts = float(e["ts"])
            dur = float(e.get("dur") or 0.0)
        except (KeyError, TypeError, ValueError):
            no_time += 1
            continue
        if dur < 0:  # a broken clock or writer: counted, and the event kept as an instant so nothing sums it
            negative += 1
            dur = 0.0
        name = e.get("name", "")
        args = e.get("args") or {}
        read[kind] += 1
        if kind == "op":
            if name.startswith(STEP_PREFIX):  # the 2021 convention records steps as operators
                _add(cpu_steps, (intern(name), ts, dur))
                continue
            if name.startswith(TORCH_PHASES):  # and torch's phase marks too: kept as operators, and as phases
                _add(tags, (intern(_phase_tag(name)), ts, dur, thread_of(e.get("pid"), e.get("tid"))))
            nid = names.get(name)
            if nid is None:
                nid = intern(name)
            pid, tid = e.get("pid"), e.get("tid")
            thread = raw_threads.get((pid, tid))
            if thread is None:
                thread = thread_of(pid, tid)
            op_cols[0](nid)
            op_cols[1](ts)
            op_cols[2](dur)
            op_cols[3](thread)
            op_cols[4](float(args.get("flops") or 0))
            dims = args.get("Input Dims") or args.get("Input dims")
            op_cols[5](recorder.add(nid, name, dims, args, len(ops["name"]) - 1) if dims is not None else -1)
            if shape_count[nid] < SHAPES_PER_OP:
                if dims:
                    shape_count[nid] += 1
                    shapes[nid][str([d for d in dims if d])] += 1
        elif kind == "runtime":
            nid = names.get(name)
            if nid is None:
                nid = intern(name)
            pid, tid = e.get("pid"), e.get("tid")
            thread = raw_threads.get((pid, tid))
            if thread is None:
                thread = thread_of(pid, tid)
            rt_cols[0](nid)
            rt_cols[1](ts)
            rt_cols[2](dur)
            rt_cols[3](thread)
            rt_cols[4](int(args.get("correlation", -1)))
        elif kind in DEVICE_KIND:
            nid = names.get(name)
            if nid is None:
                nid = intern(name)
            stream_id = args.get("stream", e.get("tid"))
            dev_cols[0](DEVICE_KIND[kind])
            dev_cols[1](nid)
            dev_cols[2](ts)
            dev_cols[3](dur)
            dev_cols[4](int(args.get("device", e.get("pid")) or 0))
            dev_cols[5](stream_id if type(stream_id) is int else _int(stream_id))
            dev_cols[6](int(args.get("correlation", -1)))
            dev_cols[7](float(args.get("bytes") or 0))
        elif kind == "python":
            if not _rare_python(name, ts, dur, e, modules, thread_of, intern):
                read[kind] -= 1
                python_other += 1
        else:
            _rare(kind, name, ts, dur, e, cpu_steps, gpu_steps, marks, host_comm, tags, syncs, thread_of, intern)

    skipped = _skipped(skipped_ph, unknown, read, python_other, no_time)
    if negative:
        skipped["negative durations"] = Skipped(negative, "events with dur < 0: kept with duration 0, so no figure "
                                                          "sums a negative time")
    return TraceData(
        path=str(stream.path), metadata=stream.metadata, names=list(names),
        ops=_np(ops), modules=_np(modules), runtime=_np(runtime), device=_np(device), cpu_steps=_np(cpu_steps),
        gpu_steps=_np(gpu_steps), gpu_syncs=_np(syncs), shapes=dict(shapes),
        read={k: v for k, v in read.items() if v}, skipped=skipped, events=n,
        phase_marks=_np(marks), host_comm=_np(host_comm), live_tags=_np(tags), calls=recorder.calls,
        overflow=recorder.overflow)


class _CallRecorder:
    """Distinct recorded calls per op name (SIGNATURES_PER_OP each): the key is the recorded text, so two calls with
    the same dims, dtypes and (for ops a formula reads them for) concrete arguments share one entry."""

    def __init__(self):
        self.ids: dict[tuple, int] = {}
        self.calls: list = []
        self.per_op: Counter = Counter()
        self.overflow: dict[int, object] = {}
        self.reads_concrete: dict[int, bool] = {}

    def add(self, nid: int, name: str, dims, args: dict, index: int) -> int:
        concrete = self.reads_concrete.get(nid)
        if concrete is None:
            concrete = self.reads_concrete[nid] = name in work.CONV or name in work.ATTENTION
        types = args.get("Input type")
        # strides too: a transposed operand is another kernel (TraceLens keeps them apart as well)
        key = (nid, str(dims), str(types), str(args.get("Concrete Inputs")) if concrete else "",
               str(args.get("Input Strides")))
        cid = self.ids.get(key)
        if cid is not None:
            return cid
        call = work.Call(dims=dims, types=types or [], concrete=(args.get("Concrete Inputs") or []) if concrete else [])
        if self.per_op[nid] >= SIGNATURES_PER_OP:
            self.overflow[index] = work.of_call(name, call)
            return -2
        self.per_op[nid] += 1
        cid = self.ids[key] = len(self.calls)
        self.calls.append((nid, call))
        return cid


def _rare_python(name: str, ts: float, dur: float, e: dict, modules, thread_of, intern) -> bool:
    """A python frame: an nn.Module's (kept, for the module tree) or another (False: counted as skipped)."""
    if not name.startswith(MODULE_PREFIX):
        return False
    _add(modules, (intern(name[len(MODULE_PREFIX):]), ts, dur, thread_of(e.get("pid"), e.get("tid"))))
    return True


def _phase_tag(name: str) -> str:
    """The OpLens phase one of torch's marks (TORCH_PHASES) stands for: the data wait, or the optimizer."""
    return LIVE_TAG + ("data" if name.startswith("enumerate(DataLoader)") else "optimizer")


def _rare(kind: str, name: str, ts: float, dur: float, e: dict, cpu_steps, gpu_steps, marks, host_comm, tags, syncs,
          thread_of, intern) -> None:
    """The few annotation and sync events of a trace (steps, serving phases, host collectives, OpLens's own tags):
    out of the per-operator loop's way."""
    if kind == "annotation":
        if name.startswith(STEP_PREFIX):
            _add(cpu_steps, (intern(name), ts, dur))
        elif name.startswith(PHASE_PREFIXES):
            _add(marks, (intern(name), ts, dur))
        elif name.startswith(HOST_COMM_PREFIXES):
            _add(host_comm, (ts, dur))
        elif name.startswith(LIVE_TAG):
            _add(tags, (intern(name), ts, dur, thread_of(e.get("pid"), e.get("tid"))))
        elif name.startswith(TORCH_PHASES):  # torch's own marks in any training loop: the data wait, the optimizer
            _add(tags, (intern(_phase_tag(name)), ts, dur, thread_of(e.get("pid"), e.get("tid"))))
    elif kind == "gpu_annotation":
        if name.startswith(STEP_PREFIX):
            _add(gpu_steps, (intern(name), ts, dur))
    elif kind == "gpu_sync":
        _add(syncs, (ts, dur))


def _skipped(skipped_ph: Counter, unknown: Counter, read: Counter, python_other: int,
             no_time: int) -> dict[str, Skipped]:
    """What the pass left out, each with why (the import's validation report); drops ignored kinds from `read`."""
    skipped: dict[str, Skipped] = {}
    flows = skipped_ph.pop("s", 0) + skipped_ph.pop("f", 0) + skipped_ph.pop("t", 0)
    if flows:
        skipped["flow events"] = Skipped(flows, "launch-to-kernel arrows; the correlation id in each runtime call and "
                                                "kernel links them already")
    if skipped_ph.get("i") or skipped_ph.get("I"):
        skipped["instant events"] = Skipped(skipped_ph.pop("i", 0) + skipped_ph.pop("I", 0),
                                            "memory records and markers; an import does not rebuild memory use")
    if skipped_ph.get("M"):
        skipped["metadata rows"] = Skipped(skipped_ph.pop("M"), "process and thread names; not needed for the figures")
    for ph, c in skipped_ph.items():
        skipped[f"phase '{ph}' events"] = Skipped(c, "only complete ('X') events carry a duration")
    if python_other:
        skipped["python frames"] = Skipped(python_other, "Python stack frames; only nn.Module frames are used, "
                                                         "for the module tree")
    for cat, c in unknown.items():
        skipped[f"category '{cat}'"] = Skipped(c, "unknown category; not used")
    for cat in [k for k in read if k in IGNORED_WHY]:
        skipped[f"category '{cat}'"] = Skipped(read.pop(cat), IGNORED_WHY[cat])
    for k in [k for k in read if k in ("ac2g", "async")]:
        read.pop(k)
    if no_time:
        skipped["events without a start time"] = Skipped(no_time, "no 'ts' to place them on the timeline")

    return skipped


def _add(cols: dict[str, array], values: tuple) -> None:
    for col, v in zip(cols.values(), values):
        col.append(v)


def _int(x) -> int:
    """A stream id: 7, "7" or the 2021 convention's "stream 7"."""
    if isinstance(x, int):
        return x
    digits = "".join(ch for ch in str(x) if ch.isdigit())
    return int(digits) if digits else -1


def _np(cols: dict[str, array]) -> dict[str, np.ndarray]:
    return {k: np.frombuffer(v, dtype=v.typecode) if len(v) else np.zeros(0, dtype=v.typecode) for k, v in cols.items()}
