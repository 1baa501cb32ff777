"""The GPU timeline's definitions on real traces: against TraceLens's gpu_timeline and against counts made here by
hand from the raw JSON (plain Python over the events, none of OpLens's interval code)."""
from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from profiler.traces.columns import load
from profiler.traces.timeline import whole_trace_breakdown
from tests.testdata import DATA

COMM_WORDS = ("nccl", "rccl")


def raw(name: str) -> list[dict]:
    with gzip.open(DATA / f"{name}.pt.trace.json.gz", "rt") as f:
        return [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]


def merged(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def covered(intervals) -> float:
    return sum(e - s for s, e in merged(intervals))


def test_exposed_communication_of_an_nccl_rank_by_hand():
    """HTA's sampled training rank (NCCL SendRecv): communication time not overlapped by computation, counted by hand
    as |comm ∪ compute| - |compute| over the whole trace, equals ours to the nanosecond."""
    events = raw("sampled_rank0_gpu")
    kernels = [(e["ts"], e["ts"] + e["dur"], any(w in e["name"].lower() for w in COMM_WORDS))
               for e in events if e.get("cat") == "kernel"]
    comm = [(s, e) for s, e, c in kernels if c]
    compute = [(s, e) for s, e, c in kernels if not c]
    exposed = covered(comm + compute) - covered(compute)
    assert len(comm) == 10 and exposed > 0
    ours = whole_trace_breakdown(load(DATA / "sampled_rank0_gpu.pt.trace.json.gz"))
    assert ours["comm"] == pytest.approx(covered(comm), abs=1e-3)
    assert ours["exposed_comm"] == pytest.approx(exposed, abs=1e-3)


@pytest.mark.parametrize("name,unlinked", [("sampled_rank0_gpu", True), ("b200_rank0_of8", False),
                                           ("h100_bert_small", False)])
def test_timeline_agrees_with_tracelens(name, unlinked):
    """TraceLens's gpu_timeline (tests/data/tracelens; with unlinked kernels where its own CLI cannot link them).
    On b200 TraceLens files the symmetric-memory all-reduce under computation; its NCCL all-gather is the only
    communication it sees, so only the totals it shares with ours are compared there."""
    table = "gpu_timeline_include_unlinked.csv" if unlinked else "gpu_timeline.csv"
    ref = pd.read_csv(DATA / "tracelens" / name / table).set_index("type")["time ms"]
    ours = {k: v / 1e3 for k, v in whole_trace_breakdown(load(DATA / f"{name}.pt.trace.json.gz")).items()}
    assert ours["window"] == pytest.approx(ref["total_time"], abs=1e-3)
    assert ours["busy"] == pytest.approx(ref["busy_time"], abs=1e-3)
    assert ours["idle"] == pytest.approx(ref["idle_time"], abs=1e-3)
    assert ours["memcpy"] == pytest.approx(ref["total_memcpy_time"], abs=1e-3)
    assert ours["exposed_memcpy"] == pytest.approx(ref["exposed_memcpy_time"], abs=1e-3)
    if name != "b200_rank0_of8":
        assert ours["comm"] == pytest.approx(ref["total_comm_time"], abs=1e-3)
        # TraceLens lets memsets hide communication too: 2 us apart on sampled_rank0 (28 us of memsets)
        assert ours["exposed_comm"] == pytest.approx(ref["exposed_comm_time"], abs=5e-3)
        # TraceLens's computation includes memsets
        assert ours["computation"] + ours["memset"] == pytest.approx(ref["computation_time"], abs=1e-3)


def test_kernels_shorter_than_their_launch_by_hand():
    events = raw("h100_bert_small")
    launches = {e["args"]["correlation"]: e["dur"] for e in events
                if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    kernels = [e for e in events if e.get("cat") == "kernel"]
    by_hand = sum(1 for k in kernels if k["dur"] < launches.get(k["args"].get("correlation"), float("-inf")))
    ours = whole_trace_breakdown(load(DATA / "h100_bert_small.pt.trace.json.gz"))
    assert by_hand > 0 and ours["shorter_than_launch"] == by_hand
    assert ours["idle_host"] + ours["idle_sync"] + ours["idle_short"] + ours["idle_other"] == pytest.approx(
        ours["idle"], abs=1e-6)


def test_collectives_split_into_transfer_and_waiting_across_ranks():
    """TensorBoard's plugin's split, on the two real gloo ranks (rank 1 has twice the batch): each collective's
    transfer time is the fastest rank's duration, the rest is waiting; the straggler waits for no one."""
    from profiler.traces.importer import import_trace

    files = [DATA / "ddp_rank0.pt.trace.json.gz", DATA / "ddp_rank1.pt.trace.json.gz"]
    run = import_trace([str(f) for f in files])
    fast, slow = run.ranks
    durs = [sorted((e["ts"], e["dur"]) for e in raw(f"ddp_rank{r}") if e.get("name", "").startswith("gloo:"))
            for r in (0, 1)]
    n = min(len(d) for d in durs)
    transfer = sum(min(durs[0][i][1], durs[1][i][1]) for i in range(n))
    assert fast.collectives == slow.collectives == n > 0
    assert fast.comm_transfer_ms == slow.comm_transfer_ms == pytest.approx(transfer / 3 / 1e3)  # 3 steps
    wait_fast = sum(durs[0][i][1] for i in range(n)) - transfer
    assert fast.comm_sync_ms == pytest.approx(wait_fast / 3 / 1e3) and fast.comm_sync_ms > 0
    assert slow.straggler and slow.comm_sync_ms < 0.1 * fast.comm_sync_ms
