"""Read PyTorch (Kineto) / Chrome traces, ours or recorded elsewhere: .json or .json.gz, both naming conventions.

Newer traces use categories cpu_op / kernel / gpu_memcpy / cuda_runtime; TensorBoard-plugin-era ones use
Operator / Kernel / Memcpy / Runtime. Both map to the newer names.
"""
from __future__ import annotations

import gzip
import io
import json
import re
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from profiler.schema import TraceFormatError

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
STEP_PREFIX = "ProfilerStep#"
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


REFILL_BELOW = 1 << 16  # bytes left in the buffer that trigger a refill; events are far smaller
CHUNK_CHARS = 1 << 20  # text read per refill: big enough that refills cost nothing, small enough to stay out of memory
_WS = re.compile(r"[ \t\n\r]*")
_SEP = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")
_decode = json.JSONDecoder(strict=False).raw_decode  # strict=False: Kineto writes raw control characters in names


class TraceStream:
    """The events of a trace file, one dict at a time, never the whole document in memory.

    Iterate it once; `metadata` (every top-level key but traceEvents) is complete after the iteration, since writers
    put keys such as deviceProperties before or after the events. Bad input raises TraceFormatError naming the file.
    """

    def __init__(self, path: str | Path, progress: Callable[[float], None] | None = None):
        self.path = Path(path)
        self.metadata: dict = {}
        self.progress = progress  # called with the share of the file read so far (compressed bytes for .gz)
        if not self.path.is_file():
            raise TraceFormatError(f"trace file not found: {path}")
        if self.path.stat().st_size == 0:
            raise TraceFormatError(f"{self.path.name}: the file is empty")

    def __iter__(self) -> Iterator[dict]:
        name = self.path.name
        try:
            with open(self.path, "rb") as raw, _open_text(self.path, raw) as f:
                size = max(1, self.path.stat().st_size)
                report = (lambda: self.progress(min(1.0, raw.tell() / size))) if self.progress else None
                yield from _Parser(f, name, self.metadata, report).events()
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise TraceFormatError(f"{name}: the gzip stream is truncated or corrupt ({exc})") from None
        except UnicodeDecodeError:
            raise TraceFormatError(f"{name}: not valid JSON (binary data, not UTF-8 text)") from None
        except json.JSONDecodeError as exc:
            raise TraceFormatError(f"{name}: not valid JSON, perhaps truncated ({exc})") from None


def _open_text(p: Path, raw):
    """A text stream over `raw` (the file opened in binary), gunzipped when it is gzip; raw.tell() is the progress."""
    gz = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    return io.TextIOWrapper(gzip.GzipFile(fileobj=raw) if gz else raw, encoding="utf-8")


class _Parser:
    """A streaming reader for the one shape traces have: {"traceEvents": [event, ...], other keys} or a bare array.

    Each event is decoded by the json module's C scanner (raw_decode) from a text buffer that is refilled in chunks.
    """

    def __init__(self, f, name: str, metadata: dict, report: Callable[[], None] | None = None):
        self.f, self.name, self.metadata, self.report = f, name, metadata, report
        self.buf, self.pos, self.eof = "", 0, False

    def _more(self) -> bool:
        chunk = self.f.read(CHUNK_CHARS)
        if self.report is not None:
            self.report()
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def _peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def _expect(self, chars: str, where: str) -> str:
        c = self._peek()
        if not c or c not in chars:
            got = f"'{c}'" if c else "the end of the file"
            raise json.JSONDecodeError(f"expected {' or '.join(repr(x) for x in chars)} {where}, found {got}",
                                       self.buf, self.pos)
        self.pos += 1
        return c

    def _value(self):
        while True:
            self._peek()
            try:
                obj, end = _decode(self.buf, self.pos)
            except json.JSONDecodeError:
                if self._more():  # the value may run past the buffer: read on and try again
                    continue
                raise
            if end == len(self.buf) and not self.eof and self._more():
                continue  # a number cut at the buffer's end would decode short
            self.pos = end
            return obj

    def events(self) -> Iterator[dict]:
        c = self._peek()
        if c == "[":  # the bare-array form of the Chrome trace format
            self.pos += 1
            yield from self._array()
            return
        if c != "{":
            if c and c in '"-0123456789tfn':
                raise TraceFormatError(f"{self.name}: not a Chrome/Kineto trace (no traceEvents list)")
            raise json.JSONDecodeError("expected a JSON object", self.buf, self.pos)
        self.pos += 1
        found = False
        if self._peek() == "}":
            self.pos += 1
        else:
            while True:
                key = self._value()
                self._expect(":", "after a key")
                if key == "traceEvents" and self._peek() == "[":
                    self.pos += 1
                    found = True
                    yield from self._array()
                else:
                    self.metadata[key] = self._value()
                if self._expect(",}", "between keys") == "}":
                    break
        if not found:
            raise TraceFormatError(f"{self.name}: not a Chrome/Kineto trace (no traceEvents list)")

    def _array(self) -> Iterator[dict]:
        if self._peek() == "]":
            self.pos += 1
            return
        decode, sep, ws = _decode, _SEP.match, _WS.match
        while True:
            if not self.eof and len(self.buf) - self.pos <= REFILL_BELOW:
                self._more()  # refill before an event is cut: each failed decode costs a scan of the buffer
            # fast path: the events that lie whole in the buffer, in one tight loop (yielded at once, so the
            # decoded dicts die young and the cyclic GC never sees thousands of them)
            buf, n = self.buf, len(self.buf)
            limit = n if self.eof else n - REFILL_BELOW
            pos = ws(buf, self.pos).end()
            stop = "refill"
            while pos < limit:
                try:
                    obj, end = decode(buf, pos)
                except ValueError:
                    stop = "slow"  # an event longer than the margin, or a broken one (_value says which)
                    break
                if end >= n:
                    stop = "slow"
                    break
                m = sep(buf, end)
                yield obj
                if m is None:  # no comma: the array ends here, or the file is broken (_expect says which)
                    pos, stop = end, "separator"
                    break
                pos = m.end()
            self.pos = pos
            if stop == "refill" and not self.eof:
                continue
            if stop == "slow":
                yield self._value()
            if self._expect(",]", "between events") == "]":
                return


def read_trace(path: str | Path) -> Trace:
    """Parse a trace file into complete ("ph": "X") events, for drawing; TraceFormatError names what is wrong."""
    stream = TraceStream(path)
    events = []
    for e in stream:
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        cat = str(e.get("cat", ""))
        norm = CATEGORY.get(cat.lower(), cat.lower() or "other")
        # args are most of a trace's bytes; only the copies' byte counts are used (summary)
        args = {"bytes": (e.get("args") or {}).get("bytes", 0)} if norm in ("gpu_memcpy", "gpu_memset") else {}
        events.append(TraceEvent(name=str(e.get("name", "")), cat=norm, ts_us=float(e.get("ts", 0)),
                                 dur_us=float(e.get("dur", 0) or 0), pid=str(e.get("pid", "")),
                                 tid=str(e.get("tid", "")), args=args))
    events.sort(key=lambda ev: ev.ts_us)
    return Trace(path=str(stream.path), events=events, metadata=stream.metadata)


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
    return [e for e in trace.events if e.name.startswith(STEP_PREFIX)]


# annotations can span a whole job and flatten every op in a timeline: shown only when asked for
HIDDEN_BY_DEFAULT = frozenset({"python_function", "trace", "user_annotation", "gpu_user_annotation"})


def default_categories(trace: Trace) -> list[str]:
    """The event categories a timeline shows at first: every one in the trace but job-long annotations, sorted."""
    return sorted({e.cat for e in trace.events} - HIDDEN_BY_DEFAULT)


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


def trace_file_name(worker: str) -> str:
    """`<worker>.<ns timestamp>.pt.trace.json.gz`, the name TensorBoard's profiler plugin looks for."""
    return f"{worker}.{time.time_ns()}.pt.trace.json.gz"


def merge_sessions(paths: list[str | Path], out: str | Path) -> Path:
    """Join the Chrome traces of several short torch.profiler sessions of one process into one gzipped trace.

    Each session records one step, always named ProfilerStep#1: here step i is renamed ProfilerStep#<i+1>, so every
    recorded inference is its own step. Timestamps are made relative to the first session's base time (each session
    writes its own baseTimeNanoseconds); the first session's metadata is kept.
    """
    merged: dict = {}
    events: list = []
    base_ns = None
    for i, path in enumerate(paths):
        with open(path, encoding="utf-8") as f:
            trace = json.load(f)
        own_ns = int(trace.get("baseTimeNanoseconds") or 0)
        if base_ns is None:
            base_ns = own_ns
            merged = {k: v for k, v in trace.items() if k != "traceEvents"}
        shift_us = (own_ns - base_ns) / 1e3
        for e in trace.get("traceEvents") or []:
            if i and e.get("ph") == "M":  # process and thread names: once is enough
                continue
            if shift_us and "ts" in e:
                e["ts"] = float(e["ts"]) + shift_us
            if str(e.get("name", "")).startswith(STEP_PREFIX):
                e["name"] = f"{STEP_PREFIX}{i + 1}"
            events.append(e)
    merged["traceEvents"] = events
    out = Path(out)
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=1) as f:  # level 1: the trace is written on every run
        json.dump(merged, f)
    return out
