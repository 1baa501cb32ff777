"""Read PyTorch (Kineto) / Chrome traces, ours or recorded elsewhere: .json or .json.gz, both naming conventions.

Newer traces use categories cpu_op / kernel / gpu_memcpy / cuda_runtime; TensorBoard-plugin-era ones use
Operator / Kernel / Memcpy / Runtime. Both map to the newer names.
"""
from __future__ import annotations

import gzip
import json
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .schema import TraceFormatError

CATEGORY = {
    "cpu_op": "cpu_op", "operator": "cpu_op",
    "kernel": "kernel",
    "gpu_memcpy": "gpu_memcpy", "memcpy": "gpu_memcpy",
    "gpu_memset": "gpu_memset", "memset": "gpu_memset",
    "cuda_runtime": "cuda_runtime", "runtime": "cuda_runtime", "cuda_driver": "cuda_runtime",
    "user_annotation": "user_annotation", "gpu_user_annotation": "gpu_user_annotation",
    "python_function": "python_function", "python": "python_function",
    "profilerstep": "user_annotation",
}
_DIRECTIONS = (("HtoD", "H2D"), ("DtoH", "D2H"), ("DtoD", "D2D"), ("HtoH", "H2H"), ("PtoP", "P2P"))


@dataclass
class TraceEvent:
    name: str
    cat: str  # normalised category
    ts_us: float
    dur_us: float
    pid: str
    tid: str
    args: dict = field(default_factory=dict)

    @property
    def end_us(self) -> float:
        return self.ts_us + self.dur_us


@dataclass
class Trace:
    path: str
    events: list[TraceEvent]
    metadata: dict = field(default_factory=dict)

    def of(self, cat: str) -> list[TraceEvent]:
        return [e for e in self.events if e.cat == cat]


def read_trace(path: str | Path) -> Trace:
    """Parse a trace file into complete ("ph": "X") events; TraceFormatError names what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise TraceFormatError(f"trace file not found: {path}")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise TraceFormatError(f"{p.name}: the gzip stream is truncated or corrupt ({exc})") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TraceFormatError(f"{p.name}: not valid JSON, perhaps truncated ({exc})") from None
    if isinstance(data, list):  # the bare-array form of the Chrome trace format
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise TraceFormatError(f"{p.name}: not a Chrome/Kineto trace (no traceEvents list)")
    events = []
    for e in data["traceEvents"]:
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        cat = str(e.get("cat", ""))
        events.append(TraceEvent(name=str(e.get("name", "")), cat=CATEGORY.get(cat.lower(), cat.lower() or "other"),
                                 ts_us=float(e.get("ts", 0)), dur_us=float(e.get("dur", 0) or 0),
                                 pid=str(e.get("pid", "")), tid=str(e.get("tid", "")), args=e.get("args") or {}))
    events.sort(key=lambda ev: ev.ts_us)
    meta = {k: v for k, v in data.items() if k != "traceEvents"}
    return Trace(path=str(p), events=events, metadata=meta)


def memcpy_direction(name: str) -> str:
    for tag, direction in _DIRECTIONS:
        if tag in name:
            return direction
    return "other"


def summary(trace: Trace) -> dict:
    """Counts and summed durations by category; memcpy calls, bytes and time by direction."""
    by_cat: dict[str, dict] = defaultdict(lambda: {"count": 0, "dur_us": 0.0})
    memcpy: dict[str, dict] = defaultdict(lambda: {"calls": 0, "bytes": 0, "dur_us": 0.0})
    for e in trace.events:
        by_cat[e.cat]["count"] += 1
        by_cat[e.cat]["dur_us"] += e.dur_us
        if e.cat == "gpu_memcpy":
            m = memcpy[memcpy_direction(e.name)]
            m["calls"] += 1
            m["bytes"] += int(e.args.get("bytes", 0) or 0)
            m["dur_us"] += e.dur_us
    span = (max(e.end_us for e in trace.events) - min(e.ts_us for e in trace.events)) if trace.events else 0.0
    return {"categories": dict(by_cat), "memcpy": dict(memcpy), "span_us": span, "events": len(trace.events)}


def steps(trace: Trace) -> list[TraceEvent]:
    """ProfilerStep#N windows, in order."""
    return [e for e in trace.events if e.name.startswith("ProfilerStep#")]


def window(trace: Trace, step: int | None = 0, max_events: int = 5000) -> list[TraceEvent]:
    """Events inside one profiler step (or the whole trace when it has none), longest first when capped."""
    marks = steps(trace)
    if marks and step is not None:
        s = marks[min(step, len(marks) - 1)]
        # device work launched in the step can finish after it: keep what starts inside it
        inside = [e for e in trace.events if s.ts_us <= e.ts_us <= s.end_us and e is not s]
    else:  # no steps: the stretch where operators or device work ran, not job-long annotations
        work = [e for e in trace.events if e.cat in ("cpu_op", "kernel", "gpu_memcpy", "gpu_memset", "cuda_runtime")]
        lo, hi = (min(e.ts_us for e in work), max(e.end_us for e in work)) if work else (float("-inf"), float("inf"))
        inside = [e for e in trace.events if lo <= e.ts_us <= hi]
    if len(inside) > max_events:
        inside = sorted(sorted(inside, key=lambda e: e.dur_us, reverse=True)[:max_events], key=lambda e: e.ts_us)
    return inside
