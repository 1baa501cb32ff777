"""Trace import speed and memory: OpLens's whole import vs torch-tb-profiler's own loader, in one run.

For each trace, each loader runs in a fresh process (interleaved, `--repeats` times; the median is reported):
- OpLens: profiler.traces.importer.import_trace (stream parse, attribution, GPU timeline, validation).
- torch-tb-profiler 0.4.3: RunProfileData.parse + RunGenerator.generate_run_profile, what its RunLoader runs per
  worker file.
Wall time is measured inside the child around the call; memory is the child's peak RSS (VmHWM) minus its RSS just
before the call ("memory added by the import").

The large case is generated: the events of the biggest shared trace (diff/control_a100, 35 MB, 109k events) copied
with shifted timestamps and correlation ids until the uncompressed JSON reaches --large-mb (default 54).

    python benchmarks/trace_import.py [--repeats 3] [--large-mb 54]
    python benchmarks/trace_import.py --huge-mb 1024   # a generated ~1 GB trace: import time and peak memory
"""
from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "traces"

from profiler.console import format_table  # noqa: E402

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
def status(key):  # VmHWM is this process's own peak; ru_maxrss would carry the parent's peak over exec
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
def rss():
    return status("VmRSS")
which, path = sys.argv[1], sys.argv[2]
if which == "oplens":
    from profiler.traces.importer import import_trace
    import numpy
    base = rss(); t = time.perf_counter()
    run = import_trace(path)
    wall = time.perf_counter() - t
    what = f"{len(run.ops)} op rows, {len(run.kernels)} kernel rows, {len(run.shapes)} signature rows"
else:
    import logging, tempfile
    logging.disable(logging.CRITICAL)
    from torch_tb_profiler.profiler.data import RunProfileData
    from torch_tb_profiler.profiler.run_generator import RunGenerator
    cache = tempfile.mkdtemp()
    base = rss(); t = time.perf_counter()
    data = RunProfileData.parse("worker0", "span", path, cache)
    RunGenerator("worker0", "span", data).generate_run_profile()
    wall = time.perf_counter() - t
    what = ""
peak = status("VmHWM")
print(json.dumps({"wall_s": wall, "added_mb": (peak - base) / 2**20, "peak_mb": peak / 2**20, "what": what}))
"""


def measure(which: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, which, str(path), str(ROOT)], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{which} on {path.name} failed: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_large(target_mb: float, folder: Path) -> tuple[Path, int, float]:
    """Copies of a real trace's events, shifted in time and in correlation/external ids, up to target_mb of JSON."""
    src = json.loads(gzip.decompress((SHARED / "diff" / "control_a100.pt.trace.json.gz").read_bytes()))
    events = [e for e in src["traceEvents"] if e.get("ph") != "M"]
    meta_events = [e for e in src["traceEvents"] if e.get("ph") == "M"]
    ts = [e["ts"] for e in events if "ts" in e]
    span = max(ts) - min(ts) + 1000
    out, size, copy = list(meta_events), 0, 0
    limit = target_mb * 1e6
    while size < limit:
        for e in events:
            e2 = dict(e)
            if "ts" in e2:
                e2["ts"] = e["ts"] + copy * span
            if "id" in e2 and isinstance(e2["id"], int):
                e2["id"] = e["id"] + copy * 10_000_000
            if isinstance(e.get("args"), dict):
                a = dict(e["args"])
                for k in ("correlation", "External id", "external id"):
                    if isinstance(a.get(k), int):
                        a[k] += copy * 10_000_000
                e2["args"] = a
            out.append(e2)
            size += len(json.dumps(e2)) + 2
            if size >= limit:
                break
        copy += 1
    doc = {k: v for k, v in src.items() if k != "traceEvents"}
    doc["traceEvents"] = out
    text = json.dumps(doc)
    path = folder / "large.pt.trace.json.gz"
    path.write_bytes(gzip.compress(text.encode(), 6))
    return path, len(out), len(text) / 1e6


def write_huge(target_mb: float, path: Path) -> tuple[int, float]:
    """A trace of about target_mb MB of uncompressed JSON written event by event (never whole in memory): copies of
    the b200 vLLM trace's events (recorded shapes, kernels, runtime calls, NCCL), shifted in time and ids."""
    src = json.loads(gzip.decompress((SHARED / "b200_rank0_of8.pt.trace.json.gz").read_bytes()))
    events = [e for e in src["traceEvents"] if e.get("ph") != "M"]
    ts = [e["ts"] for e in events if "ts" in e]
    span = max(ts) - min(ts) + 1000
    head = {k: v for k, v in src.items() if k != "traceEvents"}
    limit, size, n, copy = target_mb * 1e6, 0, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(head)[:-1] + ', "traceEvents": [\n')
        first = True
        while size < limit:
            shift, ids = copy * span, copy * 10_000_000
            for e in events:
                e2 = dict(e)
                if "ts" in e2:
                    e2["ts"] = e["ts"] + shift
                if isinstance(e2.get("id"), int):
                    e2["id"] = e["id"] + ids
                a = e.get("args")
                if isinstance(a, dict) and ("correlation" in a or "External id" in a):
                    a = dict(a)
                    for k in ("correlation", "External id"):
                        if isinstance(a.get(k), int):
                            a[k] += ids
                    e2["args"] = a
                text = json.dumps(e2)
                f.write(("" if first else ",\n") + text)
                first = False
                size += len(text) + 2
                n += 1
            copy += 1
        f.write("\n]}\n")
    return n, path.stat().st_size / 1e6


def huge(target_mb: float) -> int:
    """The issue's large-trace target: import a generated ~1 GB trace in one fresh process; time and peak RSS."""
    tmp = Path(tempfile.mkdtemp(prefix="oplens-huge-"))
    path = tmp / "huge.pt.trace.json"
    try:
        n, mb = write_huge(target_mb, path)
        r = measure("oplens", path)
    finally:
        path.unlink(missing_ok=True)
        tmp.rmdir()
    rows = [["huge (b200 copies)", f"{mb:,.0f}", f"{n:,}", f"{r['wall_s']:.1f}", f"{r['peak_mb']:,.0f}",
             f"{n / r['wall_s'] / 1e3:,.0f}k", "yes" if r["wall_s"] < 60 and r["peak_mb"] < 1536 else "NO"]]
    print(f"one fresh process; peak RSS is the whole process's (VmHWM), Python and numpy included; {r['what']}")
    print(format_table(rows, ["trace", "MB json", "events", "import s", "peak RSS MB", "events/s",
                              "under 60 s and 1.5 GB"]))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--large-mb", type=float, default=54.0)
    ap.add_argument("--huge-mb", type=float, help="only the large-trace target: import a generated trace of this many "
                                                  "MB of JSON (the issue's: 1024) and report time and peak memory")
    args = ap.parse_args()
    if args.huge_mb:
        return huge(args.huge_mb)
    tmp = Path(tempfile.mkdtemp(prefix="oplens-bench-"))
    traces = [(SHARED / "h100_bert_small.pt.trace.json.gz", None), (SHARED / "b200_rank0_of8.pt.trace.json.gz", None),
              (SHARED / "resnet50_train_gpu.pt.trace.json.gz", None)]
    large, n_events, mb = make_large(args.large_mb, tmp)
    traces.append((large, (n_events, mb)))
    rows = []
    for path, info in traces:
        if info is None:
            raw = gzip.decompress(path.read_bytes())
            info = (len(json.loads(raw)["traceEvents"]), len(raw) / 1e6)
        results: dict[str, list[dict]] = {"oplens": [], "plugin": []}
        for _ in range(args.repeats):  # interleaved, so drift in machine speed hits both alike
            for which in results:
                results[which].append(measure(which, path))
        med = {w: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "added_mb")} for w, rs in results.items()}
        o, p = med["oplens"], med["plugin"]
        rows.append([path.name.replace(".pt.trace.json.gz", ""), f"{info[1]:.1f}", f"{info[0]:,}",
                     f"{o['wall_s']:.3f}", f"{p['wall_s']:.3f}", f"{p['wall_s'] / o['wall_s']:.1f}x",
                     f"{o['added_mb']:.0f}", f"{p['added_mb']:.0f}", f"{o['added_mb'] / info[1]:.2f}"])
        print(f"done {path.name}", file=sys.stderr)
    print(f"median of {args.repeats} fresh processes per loader; large = control_a100 events copied to "
          f"{args.large_mb:g} MB")
    print(format_table(rows, ["trace", "MB json", "events", "oplens s", "plugin s", "speedup", "oplens +MB",
                              "plugin +MB", "oplens +MB / MB json"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
