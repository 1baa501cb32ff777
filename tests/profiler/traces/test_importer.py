"""Trace import: figures on real traces match the independent ones in the traces' README; attribution and unions on
hand-built traces; every bad input is one clear TraceFormatError line; the CLI's JSON keys; HTA agrees where
installed."""

import gzip
import io
import json
from contextlib import redirect_stdout

import pytest
from testdata import DATA

from profiler import TraceFormatError, store
from profiler.schema import ProfileRun
from profiler.traces.attribution import UNATTRIBUTED
from profiler.traces.columns import load
from profiler.traces.importer import import_trace
from profiler.traces.timeline import whole_trace_breakdown


def kernels(run, kind="kernel"):
    ks = [k for k in run.kernels if k.kind == kind]
    return sum(k.calls for k in ks), sum(k.time_ms for k in ks) * 1e3


def transfer(run, direction):
    return next(t for t in run.transfers if t.direction == direction)


# file, cpu_op events, kernels, kernel us (README of ../shared/traces)
FIGURES = [
    ("alexnet_a100", 359, 79, 10_692),
    ("h100_bert_small", 479, 60, 307.2),
    ("mi300_bert_small", 519, 60, 388.3),
    ("sglang_qwen3_8b_decode", 61, 555, 9_765),
    ("b200_rank0_of8", 4_809, 768, 10_863),
    ("sampled_rank0_gpu", 2_329, 1_154, 606_519),
    ("resnet50_train_gpu", 23_646, 8_772, 591_532),  # 2021 convention: Operator / Kernel / Memcpy / Runtime
]


@pytest.mark.parametrize("name, ops, count, us", FIGURES)
def test_figures_match_the_readme(name, ops, count, us):
    run = import_trace(DATA / f"{name}.pt.trace.json.gz")
    assert run.model.source == "trace" and run.device.kind == "cuda"
    assert run.validation.read["op"] == ops
    calls, time_us = kernels(run)
    assert calls == count and time_us == pytest.approx(us, abs=1)
    # every microsecond of device work lands on exactly one operator row (or an unattributed row)
    _, memset_us = kernels(run, "memset")
    assert sum(o.device_ms for o in run.ops) * 1e3 == pytest.approx(time_us + memset_us, abs=1)
    assert sum(t.time_ms for t in run.transfers) == pytest.approx(sum(o.trans_ms for o in run.ops))
    g = run.gpu
    assert g.steps >= 1 and 0 < g.busy_ms <= g.window_ms + 1e-9
    assert g.idle_ms == pytest.approx(g.window_ms - g.busy_ms)
    assert g.idle_host_ms + g.idle_sync_ms + g.idle_short_ms + g.idle_other_ms == pytest.approx(g.idle_ms, rel=1e-6,
                                                                                                abs=1e-6)
    assert g.computation_ms <= g.busy_ms + 1e-9 and g.exposed_comm_ms <= g.comm_ms + 1e-9


def test_memcpy_by_direction():
    a = import_trace(DATA / "alexnet_a100.pt.trace.json.gz")
    h2d = transfer(a, "H2D")
    assert (h2d.calls, h2d.bytes) == (16, 244_403_360) and h2d.time_ms == pytest.approx(55.503, abs=1e-3)
    assert h2d.bandwidth_gbps == pytest.approx(244_403_360 / 55.503e-3 / 1e9, rel=1e-3)
    assert "aten::copy_" in h2d.op_ms  # attributed to the operator that issued it
    s = import_trace(DATA / "sampled_rank0_gpu.pt.trace.json.gz")
    assert [transfer(s, d).calls for d in ("H2D", "D2H", "D2D")] == [24, 8, 8]
    assert transfer(s, "H2D").time_ms == pytest.approx(0.877, abs=1e-3)
    r = import_trace(DATA / "resnet50_train_gpu.pt.trace.json.gz")
    assert transfer(r, "H2D").calls == 12 and transfer(r, "H2D").time_ms == pytest.approx(11.492, abs=1e-3)
    assert r.gpu.steps == 6 and r.gpu.window_source == "cpu-step" and len(r.latency.samples_ms) == 6


def test_nccl_rank_has_exposed_communication():
    run = import_trace(DATA / "b200_rank0_of8.pt.trace.json.gz")
    d2d = transfer(run, "D2D")
    assert (d2d.calls, d2d.bytes) == (146, 771_323_904) and transfer(run, "H2D").calls == 15
    assert run.gpu.comm_ms > 0 and run.gpu.exposed_comm_ms <= run.gpu.comm_ms
    assert any(k.comm and k.name.startswith("ncclDevKernel") for k in run.kernels)
    # most of this rank's communication is torch's symmetric-memory all-reduce, not NCCL: counted too
    assert run.gpu.comm_ms > 2 and any(k.comm and "multimem_all_reduce" in k.name for k in run.kernels)
    assert run.graph.method == "module-tree" and run.graph.timed_nodes > 0


def test_amd_and_nvidia_attribute_the_same_model():
    h = import_trace(DATA / "h100_bert_small.pt.trace.json.gz")
    m = import_trace(DATA / "mi300_bert_small.pt.trace.json.gz")
    assert "H100" in h.device.name and "MI300X" in m.device.name and "ROCm" in m.notes[0]
    for run in (h, m):
        assert run.gpu.window_source == "gpu-annotation"
        assert not [k for k in run.kernels if k.op == UNATTRIBUTED]
        assert {"aten::addmm", "aten::_flash_attention_forward"} <= {o.name for o in run.ops if o.device_ms > 0}
        # module tree from nn.Module frames, paths nested
        assert run.graph.method == "module-tree"
        assert any(n.id.startswith("BertLMHeadModel_0.BertModel_0.") for n in run.graph.nodes)


def test_cpu_only_trace_imports_and_says_so():
    run = import_trace(DATA / "cpu_only.pt.trace.json.gz")
    assert run.device.kind == "cpu" and run.gpu is None and run.kernels == [] and run.transfers == []
    assert run.validation.read["op"] == 4
    assert any("no device events" in n for n in run.notes)
    assert run.ops and run.ops[0].host_ms > 0


def test_saved_and_loaded_import_is_the_same_run(tmp_path):
    run = import_trace(DATA / "h100_bert_small.pt.trace.json.gz")
    store.save(run, tmp_path)
    back = store.load(run.id, tmp_path)
    assert back.gpu == run.gpu and back.kernels == run.kernels and back.validation == run.validation
    assert ProfileRun.from_dict(json.loads(json.dumps(run.to_dict()))) == run


# ---------------------------------------------------------------- hand-built traces

def write(tmp_path, events, name="t.pt.trace.json.gz", **meta):
    p = tmp_path / name
    p.write_bytes(gzip.compress(json.dumps({"traceEvents": events, **meta}).encode()))
    return p


def X(cat, name, ts, dur, pid=1, tid=1, **args):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": pid, "tid": tid, "args": args}


def test_busy_is_a_union_across_streams(tmp_path):
    events = [X("cpu_op", "aten::mm", 0, 400),
              X("kernel", "k1", 0, 100, pid=0, tid=7, stream=7, correlation=1, device=0),
              X("kernel", "k2", 50, 100, pid=0, tid=8, stream=8, correlation=2, device=0),  # overlaps k1 by 50
              X("kernel", "k3", 300, 10, pid=0, tid=7, stream=7, correlation=3, device=0)]
    run = import_trace(write(tmp_path, events))
    g = run.gpu
    assert g.window_source == "gpu-span" and g.window_ms == pytest.approx(0.310)
    assert g.busy_ms == pytest.approx(0.160)  # not 0.210, the sum
    assert g.computation_ms == pytest.approx(0.160) and g.idle_ms == pytest.approx(0.150)
    assert kernels(run) == (3, pytest.approx(210))


def test_attribution_to_the_innermost_enclosing_op_on_the_launching_thread(tmp_path):
    events = [X("cpu_op", "aten::linear", 0, 100), X("cpu_op", "aten::addmm", 10, 40),
              X("cuda_runtime", "cudaLaunchKernel", 20, 5, correlation=1),
              X("kernel", "gemm", 30, 10, pid=0, tid=7, stream=7, correlation=1, device=0),
              X("cuda_runtime", "cudaMemcpyAsync", 60, 5, correlation=2),  # inside linear only
              X("gpu_memcpy", "Memcpy HtoD (Pageable -> Device)", 70, 20, pid=0, tid=7, stream=7, correlation=2,
                device=0, bytes=2_000_000),
              X("cuda_runtime", "cudaLaunchKernel", 20, 5, tid=2, correlation=3),  # another thread: no op there
              X("kernel", "relu", 95, 5, pid=0, tid=7, stream=7, correlation=3, device=0),
              X("kernel", "old", 200, 7, pid=0, tid=7, stream=7, correlation=99, device=0)]  # launch not in trace
    run = import_trace(write(tmp_path, events))
    by_name = {k.name: k.op for k in run.kernels}
    assert by_name == {"gemm": "aten::addmm", "relu": "(no operator: cudaLaunchKernel)", "old": UNATTRIBUTED}
    ops = {o.name: o for o in run.ops}
    assert ops["aten::addmm"].device_ms == pytest.approx(0.010) and ops["aten::linear"].device_ms == 0
    assert ops["aten::linear"].total_ms == pytest.approx(0.030)  # inclusive: its child's kernel and its own copy
    assert ops["aten::linear"].host_ms == pytest.approx(0.060)  # self host time: 100 - 40
    assert ops["aten::linear"].trans_ms == pytest.approx(0.020)
    assert ops[UNATTRIBUTED].device_ms == pytest.approx(0.007)
    h2d = transfer(run, "H2D")
    assert h2d.bytes == 2_000_000 and h2d.bandwidth_gbps == pytest.approx(100.0) and h2d.op_ms == {"aten::linear": 0.02}
    skipped = {s.what: s.count for s in run.validation.skipped}
    assert skipped["device events without their launch"] == 1 and skipped["launches outside any operator"] == 1


def test_idle_time_by_cause(tmp_path):
    events = [X("cpu_op", "step", 0, 1000),
              X("cuda_runtime", "cudaLaunchKernel", 0, 5, correlation=1),
              X("kernel", "a", 10, 10, pid=0, tid=7, stream=7, correlation=1, device=0),
              X("cuda_runtime", "cudaLaunchKernel", 50, 5, correlation=2),  # launched after the GPU idled: host
              X("kernel", "b", 60, 10, pid=0, tid=7, stream=7, correlation=2, device=0),
              X("cuda_runtime", "cudaLaunchKernel", 61, 5, correlation=3),  # enqueued in time: a 5 us short gap
              X("kernel", "c", 75, 10, pid=0, tid=7, stream=7, correlation=3, device=0),
              X("cuda_runtime", "cudaStreamSynchronize", 86, 100, correlation=4),  # host blocked: sync
              X("cuda_runtime", "cudaLaunchKernel", 190, 5, correlation=5),
              X("kernel", "d", 200, 10, pid=0, tid=7, stream=7, correlation=5, device=0)]
    g = import_trace(write(tmp_path, events)).gpu
    assert g.idle_ms == pytest.approx(0.160)  # 10..210 minus 40 busy
    assert g.idle_host_ms == pytest.approx(0.040) and g.idle_short_ms == pytest.approx(0.005)
    assert g.idle_other_ms == 0
    assert g.idle_sync_ms == pytest.approx(0.115)
    assert g.launch_overhead_ms == pytest.approx(0.010) and g.short_kernels == 0


def test_gpu_step_annotations_are_the_windows(tmp_path):
    events = [X("user_annotation", "ProfilerStep#1", 0, 100), X("user_annotation", "ProfilerStep#2", 100, 100),
              X("cpu_op", "aten::mm", 5, 10), X("cpu_op", "aten::mm", 105, 10),
              X("gpu_user_annotation", "ProfilerStep#1", 20, 60, pid=0, tid=7),
              X("gpu_user_annotation", "ProfilerStep#2", 120, 80, pid=0, tid=7),
              X("kernel", "k", 30, 30, pid=0, tid=7, stream=7, correlation=1, device=0),
              X("kernel", "k", 130, 40, pid=0, tid=7, stream=7, correlation=2, device=0)]
    run = import_trace(write(tmp_path, events))
    g = run.gpu
    assert g.steps == 2 and g.step_window_ms == pytest.approx([0.060, 0.080]) and g.busy_ms == pytest.approx(0.035)
    assert run.latency.samples_ms == pytest.approx([0.1, 0.1])  # host-side ProfilerStep durations


def test_several_files_are_ranks_with_a_straggler(tmp_path):
    def rank(r, slow):
        events = [X("cpu_op", "aten::mm", 0, 1000)]
        events += [X("kernel", "gemm", 10 + 100 * i, 50 * slow, pid=0, tid=7, stream=7, correlation=i, device=0)
                   for i in range(5)]
        events += [X("kernel", "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 60 + 100 * i, 40, pid=0, tid=8, stream=8,
                     correlation=100 + i, device=0) for i in range(5)]
        return write(tmp_path, events, name=f"rank{r}.pt.trace.json.gz", distributedInfo={"rank": r, "world_size": 3})
    files = [rank(2, 1), rank(0, 1), rank(1, 1.5)]
    run = import_trace(files)
    assert [r.rank for r in run.ranks] == [0, 1, 2]
    assert [r.straggler for r in run.ranks] == [False, True, False]
    r0, r1 = run.ranks[0], run.ranks[1]
    assert r0.comm_ms == pytest.approx(0.2) and r0.exposed_comm_ms == pytest.approx(0.2) and r0.overlap == 0
    assert r1.exposed_comm_ms == pytest.approx(5 * 0.015) and r1.overlap == pytest.approx(25 / 40)  # gemms to 85+100i


def test_real_cpu_ranks_from_a_gloo_ddp_job():
    """Two real rank files (tests/data/make_ddp_traces.py: DDP over gloo, rank 1 given twice the batch): without
    device activity the rank figures come from the host - the ProfilerStep windows, the stepping thread's operators,
    gloo's own all_reduce annotations - and the doubled rank is the straggler."""
    files = [DATA / "ddp_rank1.pt.trace.json.gz", DATA / "ddp_rank0.pt.trace.json.gz"]
    run = import_trace([str(f) for f in files])
    assert [r.rank for r in run.ranks] == [0, 1]
    assert [r.straggler for r in run.ranks] == [False, True]
    for f, r in zip(reversed(files), run.ranks):
        raw = json.load(gzip.open(f))["traceEvents"]
        steps = [e["dur"] for e in raw if e.get("name", "").startswith("ProfilerStep#")]
        gloo = sorted((e["ts"], e["ts"] + e["dur"]) for e in raw if e.get("name") == "gloo:all_reduce")
        covered, reach = 0.0, float("-inf")  # their union, by hand: gloo runs two worker threads that overlap
        for a, b in gloo:
            covered += max(0.0, b - max(a, reach))
            reach = max(reach, b)
        assert r.steps == len(steps) == 3
        assert r.step_ms == pytest.approx(sum(steps) / len(steps) / 1e3, rel=1e-6)
        assert r.comm_ms == pytest.approx(covered / 3 / 1e3, rel=1e-3)  # all inside the steps
        assert 0 < r.computation_ms < r.step_ms and 0 <= r.exposed_comm_ms <= r.comm_ms
        assert "host figures" in r.note
    fast, slow = run.ranks
    assert slow.computation_ms > 1.05 * (fast.computation_ms + slow.computation_ms) / 2
    assert fast.exposed_comm_ms > slow.exposed_comm_ms  # the fast rank waits in the collective for the slow one


# ---------------------------------------------------------------- bad input

BAD = {
    "truncated gzip": (lambda raw: gzip.compress(raw)[:-40], "gzip stream is truncated or corrupt"),
    "invalid JSON": (lambda raw: gzip.compress(raw[: len(raw) // 2]), "not valid JSON, perhaps truncated"),
    "not a trace": (lambda raw: json.dumps({"hello": 1}).encode(), "no traceEvents list"),
    "a number": (lambda raw: b"42", "no traceEvents list"),
    "binary": (lambda raw: b"\x00\x01\xff\xfe binary", "not valid JSON"),
    "empty file": (lambda raw: b"", "the file is empty"),
    "empty trace": (lambda raw: json.dumps({"traceEvents": []}).encode(), "no operator or device events"),
    "annotations only": (lambda raw: json.dumps({"traceEvents": [X("user_annotation", "a", 0, 1)]}).encode(),
                         "no operator or device events"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_clear_line(tmp_path, case):
    make, message = BAD[case]
    raw = gzip.decompress((DATA / "cpu_only.pt.trace.json.gz").read_bytes())
    f = tmp_path / "bad.pt.trace.json.gz"
    f.write_bytes(make(raw))
    with pytest.raises(TraceFormatError, match=message) as exc:
        import_trace(f)
    assert "\n" not in str(exc.value) and "bad.pt.trace.json.gz" in str(exc.value)


def test_the_server_reads_only_its_data_directories_and_python_reads_what_it_is_handed(tmp_path, monkeypatch):
    """The data-directory policy lives at the server's boundary (the import job); import_trace, called from Python or
    the CLI, reads the file its user names."""
    import threading

    from profiler.jobs.worker import import_job
    from profiler.policy import PolicyError

    def as_job(path):
        return import_job({"paths": [str(path)]}, lambda *a: None, threading.Event())

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    inside = write(allowed, [X("cpu_op", "aten::mm", 0, 10)])
    outside = write(tmp_path, [X("cpu_op", "aten::mm", 0, 10)])
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(allowed))
    assert store.load(as_job(inside)).ops[0].name == "aten::mm"
    for path in (outside, allowed / ".." / outside.name):
        with pytest.raises(PolicyError, match="this server reads traces only from"):
            as_job(path)
        assert import_trace(path).ops[0].name == "aten::mm"
    monkeypatch.delenv("OPLENS_DATA_DIRS")
    # default: the repository's tests/data is allowed (the 4 cpu_op of tests/data/README's cpu_only trace)
    assert sum(o.calls for o in store.load(as_job(DATA / "cpu_only.pt.trace.json.gz")).ops) == 4
    with pytest.raises(TraceFormatError, match="not found"):
        import_trace(tmp_path / "nope.json")


def test_streaming_matches_json_loads_on_a_plain_file(tmp_path):
    raw = gzip.decompress((DATA / "h100_bert_small.pt.trace.json.gz").read_bytes())
    plain = tmp_path / "h.pt.trace.json"
    plain.write_bytes(raw)
    d = load(plain)
    assert d.events == len(json.loads(raw)["traceEvents"]) and d.metadata["deviceProperties"][0]["numSms"] == 132


# ---------------------------------------------------------------- CLI

def test_cli_import_json_has_the_keys(tmp_path):
    from profiler.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["import", str(DATA / "alexnet_a100.pt.trace.json.gz"), "--json", "--runs-dir", str(tmp_path)]) == 0
    out = json.loads(buf.getvalue())
    for key in ("id", "model", "device", "config", "latency", "totals", "ops", "transfers", "graph", "trace_path",
                "kernels", "gpu", "validation"):
        assert key in out
    assert set(out["kernels"][0]) >= {"name", "calls", "time_ms", "op"}
    assert set(out["gpu"]) >= {"steps", "window_ms", "busy_ms", "idle_ms", "computation_ms", "comm_ms",
                               "exposed_comm_ms", "memcpy_ms", "memset_ms"}
    assert {t["direction"] for t in out["transfers"]} <= {"H2D", "D2H", "D2D", "P2P"}
    assert set(out["validation"]) >= {"read", "skipped"} and out["model"]["source"] == "trace"
    assert (tmp_path / out["id"] / "run.json").is_file()
    assert store.load(out["id"], tmp_path).gpu.steps == out["gpu"]["steps"]


def test_cli_import_bad_trace_exits_2_with_one_line(tmp_path, capsys):
    from profiler.cli import main

    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    assert main(["import", str(bad), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: x.json: not a Chrome/Kineto trace")


# ---------------------------------------------------------------- against HolisticTraceAnalysis

@pytest.mark.parametrize("name", ["h100_bert_small", "mi300_bert_small"])
def test_temporal_breakdown_agrees_with_hta(tmp_path, name):
    """HTA 0.5's get_temporal_breakdown on the same trace. HTA truncates ts and dur to whole microseconds, so each
    device event may differ by up to 2 us; traces with cuda_sync events differ more (HTA counts them as busy)."""
    pytest.importorskip("hta", reason="HolisticTraceAnalysis is not installed (pip install HolisticTraceAnalysis)")
    import logging
    import shutil

    from hta.trace_analysis import TraceAnalysis

    logging.getLogger("hta").setLevel(logging.ERROR)
    shutil.copy(DATA / f"{name}.pt.trace.json.gz", tmp_path)
    hta = TraceAnalysis(trace_files={0: str(tmp_path / f"{name}.pt.trace.json.gz")}, trace_dir=str(tmp_path))
    ref = hta.get_temporal_breakdown(visualize=False).iloc[0]
    data = load(DATA / f"{name}.pt.trace.json.gz")
    ours = whole_trace_breakdown(data)
    tol = 2 * len(data.device["ts"])
    assert ours["window"] == pytest.approx(ref["kernel_time(us)"], abs=2)
    assert ours["idle"] == pytest.approx(ref["idle_time(us)"], abs=tol)
    assert ours["computation"] == pytest.approx(ref["compute_time(us)"], abs=tol)
    assert ours["window"] - ours["idle"] - ours["computation"] == pytest.approx(ref["non_compute_time(us)"], abs=tol)


def test_importing_a_live_runs_own_trace_gives_its_per_op_figures(tiny_bert_run):
    # one path (issue 10): a live run reads its per-op figures from its own trace with the import's analysis, so the
    # saved trace, imported, gives the same figures: totals over the recorded inferences = live figures x steps
    run, _ = tiny_bert_run
    steps = run.config.profile_iters
    imported = import_trace(run.trace_path)
    assert len(imported.latency.samples_ms) == steps  # one ProfilerStep per profiled inference
    by = {o.name: o for o in imported.ops}
    assert set(by) == {o.name for o in run.ops}
    for live in run.ops:
        got = by[live.name]
        assert got.calls / steps == pytest.approx(live.calls, rel=0.01), live.name
        assert got.exec_ms / steps == pytest.approx(live.exec_ms, rel=0.01, abs=1e-9), live.name
        assert got.trans_ms / steps == pytest.approx(live.trans_ms, rel=0.01, abs=1e-9), live.name
        assert got.total_ms / steps == pytest.approx(live.total_ms, rel=0.01, abs=1e-9), live.name
    # and they are the model's real figures: 2 layers x 6 Linears, the pooler and the classifier
    assert next(o for o in run.ops if o.name == "aten::addmm").calls == 14
    # what only the live run knows stays on it: shapes and FLOPs from its untimed pass
    addmm = next(o for o in run.ops if o.name == "aten::addmm")
    assert addmm.input_shapes and addmm.flops > 0 and not by["aten::addmm"].flops


def test_overlapping_slices_and_negative_durations_are_clipped_and_reported(tmp_path):
    events = [X("cpu_op", "aten::outer", 0, 100), X("cpu_op", "aten::inner", 50, 100),  # ends 50 us after its parent
              X("cpu_op", "aten::broken", 300, -20)]
    run = import_trace(write(tmp_path, events))
    host = {o.name: o.host_ms for o in run.ops}
    assert host["aten::outer"] == pytest.approx(0.050)  # only the 50 us inside it are its child's, not 100
    assert host["aten::inner"] == pytest.approx(0.100) and host["aten::broken"] == 0
    skipped = {s.what: s.count for s in run.validation.skipped}
    assert skipped["overlapping slices"] == 1 and skipped["negative durations"] == 1


def test_import_reports_progress_by_bytes(tmp_path):
    seen = []
    import_trace(DATA / "b200_rank0_of8.pt.trace.json.gz", progress=lambda stage, f: seen.append((stage, f)))
    fractions = [f for _, f in seen]
    assert seen[0][0].startswith("reading b200") and fractions == sorted(fractions) and fractions[-1] >= 0.9
    assert len(seen) >= 3  # more than a start and an end: the bar moves while the file is read
