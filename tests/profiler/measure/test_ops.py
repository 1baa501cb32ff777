"""Per-operator and transfer figures, by hand: profiler.measure.ops (what only a live run adds: detail, host transfers,
totals, per-tag times) on hand-made events; profiler.traces.importer's operator_stats / transfer_stats on a tiny
hand-written Chrome trace; and one real torch.profiler recording checked against sums of its own trace events."""
import json
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from profiler.measure import ops
from profiler.measure.flops import OpFlops
from profiler.schema import OpStat
from profiler.traces import columns as trace_data
from profiler.traces import attribution
from profiler.traces.figures import trace_figures


def evt(name, self_us=0.0, shapes=None, dtypes=None, mem=0, dev_mem=0, device="DeviceType.CPU", parent=None,
        annotation=False):
    """A torch.profiler FunctionEvent with only the fields profiler.measure.ops reads."""
    return SimpleNamespace(name=name, self_cpu_time_total=self_us, input_shapes=shapes or [], input_dtypes=dtypes or [],
                           self_cpu_memory_usage=mem, self_device_memory_usage=dev_mem, device_type=device,
                           cpu_parent=parent, self_device_time_total=0.0, is_user_annotation=annotation, flops=0)


def not_operators(name):
    """Events that carry an operator's name or memory but are not operator events: each must be ignored."""
    return [evt(name, mem=10**6, dev_mem=10**6, shapes=[[9, 9]], dtypes=["float"], annotation=True),
            evt(name, mem=10**6, dev_mem=10**6, shapes=[[9, 9]], dtypes=["float"], device="DeviceType.CUDA"),
            evt("ProfilerStep#1", mem=10**6), evt("[memory]", mem=-10**6)]


# ---------------------------------------------------------------- profiler.measure.ops on hand-made events

def test_add_detail_fills_shapes_flops_bytes_and_memory():
    stats = [OpStat("aten::addmm", calls=1, exec_ms=0.3, trans_ms=0.0), OpStat("aten::copy_", 1, 0.0, 0.1)]
    detail = [evt("aten::addmm", shapes=[[4, 8], [8, 8]], mem=1000, dev_mem=7),
              evt("aten::addmm", shapes=[[4, 8], [8, 8]], mem=-50, dev_mem=5),  # a freed block does not count
              evt("aten::addmm", shapes=[[2, 8], [8, 8]], mem=24, dev_mem=0),
              evt("aten::copy_", shapes=[[4, 8], [4, 8]], mem=0)] + not_operators("aten::addmm")
    ops.add_detail(stats, detail, on_cuda=False, flops=OpFlops({"aten::addmm": 512.0}, {"aten::addmm"}),
                   moved={"aten::addmm": 2048.0})
    mm, cp = stats
    assert (mm.flops, mm.flops_known, mm.bytes, mm.memory_bytes) == (512.0, True, 2048.0, 1024.0)
    assert mm.input_shapes == ["[[4, 8], [8, 8]]", "[[2, 8], [8, 8]]"]  # most frequent first
    assert (cp.flops, cp.flops_known, cp.bytes, cp.memory_bytes) == (0.0, False, 0.0, 0.0)
    assert cp.input_shapes == ["[[4, 8], [4, 8]]"]
    assert (mm.exec_ms, cp.trans_ms) == (0.3, 0.1)  # the times are the trace's, untouched
    ops.add_detail(stats, detail, on_cuda=True, flops=OpFlops(), moved={})
    assert (mm.memory_bytes, mm.flops_known) == (12.0, False)  # device memory on a GPU run: 7 + 5


def test_host_transfers_time_calls_and_bytes():
    stats = [OpStat("aten::copy_", calls=2, exec_ms=0.0, trans_ms=0.1),
             OpStat("aten::clone", calls=1, exec_ms=0.0, trans_ms=0.05), OpStat("aten::mm", 1, 0.3, 0.0)]
    detail = [evt("aten::copy_", shapes=[[4, 8], [4, 8]], dtypes=["float", "float"]),  # 4*8*4 = 128 bytes
              evt("aten::copy_", shapes=[[16, 8], [16, 8]], dtypes=["c10::BFloat16", "float"]),  # 16*8*2 = 256
              evt("aten::clone", shapes=[[4, 8]], dtypes=["float"])] + not_operators("aten::copy_")
    [host] = ops.host_transfers(stats, detail)
    assert (host.direction, host.calls, host.bytes) == ("host", 2, 384)
    assert host.time_ms == pytest.approx(0.15) and host.label == ops.HOST_TRANSFER_LABEL
    assert host.bandwidth_gbps == pytest.approx(384 / 0.15e6)  # bytes per ms / 1e6 = GB/s
    assert ops.host_transfers([OpStat("aten::mm", 1, 0.3, 0.0)], detail) == []  # no data movement, no row


def test_totals_split_exec_and_trans_against_wall():
    stats = [OpStat("aten::addmm", 1, exec_ms=0.3, trans_ms=0.0), OpStat("aten::copy_", 1, exec_ms=0.0, trans_ms=0.1),
             OpStat("aten::relu", 2, exec_ms=0.05, trans_ms=0.0)]
    t = ops.totals(stats, wall_ms=1.0, on_cuda=False, flop_coverage=0.75)
    assert (t.exec_ms, t.trans_ms, t.coverage, t.unexplained_ms) == pytest.approx((0.35, 0.1, 0.45, 0.55))
    assert t.trans_label == ops.HOST_TRANSFER_LABEL and t.flop_coverage == 0.75
    on_gpu = ops.totals(stats, wall_ms=0.0, on_cuda=True)
    assert (on_gpu.coverage, on_gpu.trans_label) == (0.0, ops.DEVICE_TRANSFER_LABEL)


def test_time_by_tag_goes_to_the_innermost_tag():
    outer = evt("oplens::node::encoder")
    inner = evt("oplens::node::encoder.fc", parent=outer)
    events = [evt("aten::addmm", 200, parent=inner), evt("aten::copy_", 50, parent=inner),
              evt("aten::gelu", 30, parent=outer), evt("aten::add", 10)]  # untagged: nowhere
    got = ops.time_by_tag(events, "oplens::node::", iterations=2, on_cuda=False)
    assert got == {"encoder.fc": pytest.approx((0.1, 0.025, 0.0)), "encoder": pytest.approx((0.015, 0.0, 0.0))}


# ---------------------------------------------------------------- a hand-written Chrome trace

def _op(name, ts, dur):
    return {"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": dur}


def _launch(name, ts, corr):
    return {"ph": "X", "cat": "cuda_runtime", "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": 4,
            "args": {"correlation": corr}}


def _device(cat, name, ts, dur, corr, nbytes=None):
    args = {"correlation": corr, "device": 0, "stream": 7}
    if nbytes is not None:
        args["bytes"] = nbytes
    return {"ph": "X", "cat": cat, "name": name, "pid": 0, "tid": "stream 7", "ts": ts, "dur": dur, "args": args}


HAND_TRACE = [
    # aten::linear [0, 100] encloses aten::addmm [10, 70]: the gemm launched at 20 is addmm's (innermost), the H2D
    # copy launched at 80 (after addmm ended) is linear's own
    _op("aten::linear", 0, 100), _op("aten::addmm", 10, 60),
    _launch("cudaLaunchKernel", 20, 1), _launch("cudaMemcpyAsync", 80, 2),
    _op("aten::copy_", 150, 30), _launch("cudaMemcpyAsync", 155, 3),
    _op("aten::copy_", 200, 20), _launch("cudaMemcpyAsync", 205, 4),
    _op("aten::addmm", 400, 50), _launch("cudaLaunchKernel", 410, 5),
    _launch("cudaGraphLaunch", 600, 6),  # outside any operator
    _device("kernel", "gemm_kernel", 200, 40, 1),
    _device("gpu_memcpy", "Memcpy HtoD (Pageable -> Device)", 250, 10, 2, nbytes=4000),
    _device("gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 300, 20, 3, nbytes=16000),
    _device("gpu_memcpy", "Memcpy DtoD (Device -> Device)", 330, 5, 4, nbytes=10**6),
    _device("kernel", "gemm_kernel", 460, 60, 5),
    _device("kernel", "graph_kernel", 610, 3, 6),
    _device("kernel", "early_kernel", 1, 7, 99),  # its launch was before the recording started
]


@pytest.fixture
def hand_trace(tmp_path):
    path = tmp_path / "hand.pt.trace.json"
    path.write_text(json.dumps({"traceEvents": HAND_TRACE}))
    d = trace_data.load(path)
    return d, attribution.attribute(d)


def test_operator_stats_on_a_hand_written_trace(hand_trace):
    by = {s.name: s for s in attribution.operator_stats(*hand_trace, on_gpu=True)}
    assert set(by) == {"aten::linear", "aten::addmm", "aten::copy_", attribution.UNATTRIBUTED,
                       attribution.NO_OPERATOR.format("cudaGraphLaunch")}
    got = {n: (s.calls, s.host_ms, s.exec_ms, s.device_ms, s.trans_ms, s.total_ms) for n, s in by.items()}
    assert got == {
        # self host 100 - 60 (addmm inside); its own H2D 10 us; inclusive adds addmm's first gemm: 10 + 40
        "aten::linear": pytest.approx((1, 0.040, 0.0, 0.0, 0.010, 0.050)),
        # host 60 + 50; kernels 40 + 60
        "aten::addmm": pytest.approx((2, 0.110, 0.100, 0.100, 0.0, 0.100)),
        # host 30 + 20; memcpy D2H 20 + D2D 5
        "aten::copy_": pytest.approx((2, 0.050, 0.0, 0.0, 0.025, 0.025)),
        attribution.UNATTRIBUTED: pytest.approx((1, 0.0, 0.007, 0.007, 0.0, 0.007)),
        "(no operator: cudaGraphLaunch)": pytest.approx((1, 0.0, 0.003, 0.003, 0.0, 0.003)),
    }
    assert (by["aten::linear"].category, by["aten::addmm"].category, by["aten::copy_"].category) == (
        "transfer", "compute", "transfer")
    # read as a CPU run: host self time is the timing device, copies are data movement, inclusive = host durations
    cpu = {s.name: s for s in attribution.operator_stats(*hand_trace, on_gpu=False)}
    assert (cpu["aten::linear"].exec_ms, cpu["aten::linear"].total_ms) == pytest.approx((0.040, 0.100))
    assert (cpu["aten::copy_"].exec_ms, cpu["aten::copy_"].trans_ms) == pytest.approx((0.0, 0.050))
    assert cpu["aten::addmm"].total_ms == pytest.approx(0.110)


def test_transfer_stats_on_a_hand_written_trace(hand_trace):
    out = attribution.transfer_stats(*hand_trace)
    assert [t.direction for t in out] == ["D2H", "H2D", "D2D"]  # by time, longest first
    got = {t.direction: (t.calls, t.bytes, t.time_ms, t.bandwidth_gbps, t.op_ms) for t in out}
    assert got == {
        "H2D": pytest.approx((1, 4000, 0.010, 0.4, {"aten::linear": 0.010})),  # 4000 B / 10 us = 0.4 GB/s
        "D2H": pytest.approx((1, 16000, 0.020, 0.8, {"aten::copy_": 0.020})),
        "D2D": pytest.approx((1, 10**6, 0.005, 200.0, {"aten::copy_": 0.005})),
    }
    assert {t.label for t in out} == {attribution.TRANSFER_LABEL}


# ---------------------------------------------------------------- one real recording

def _own_sums(path):
    """Per cpu_op name from the JSON itself: calls, summed duration, self duration (minus direct children on the same
    thread, found pairwise rather than with the library's sweep) and summed FLOPs."""
    evs = [e for e in json.loads(path.read_text())["traceEvents"] if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
    span = [(float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in evs]

    def encloses(p, c):  # p strictly encloses c; identical intervals: the earlier event is the parent
        (ps, pe), (cs, ce) = span[p], span[c]
        same = (ps, pe) == (cs, ce)
        return (evs[p]["tid"] == evs[c]["tid"] and ps <= cs and ce <= pe and p != c and (not same or p < c))

    sums = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for c, e in enumerate(evs):
        dur = float(e.get("dur", 0))
        parents = [p for p in range(len(evs)) if encloses(p, c)]
        if parents:
            direct = min(parents, key=lambda p: (span[p][1] - span[p][0], -p))
            sums[evs[direct]["name"]][2] -= dur
        r = sums[e["name"]]
        r[0] += 1
        r[1] += dur
        r[2] += dur
        r[3] += float(e.get("args", {}).get("flops", 0))
    return sums


def test_a_real_recording_adds_up(one_thread, tmp_path):
    """torch.profiler on two matmuls and a copy: trace_figures' per-op figures equal sums of the trace's own events."""
    a, b, out = torch.randn(64, 64), torch.randn(64, 64), torch.empty(64, 64)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        torch.mm(a, b)
        torch.mm(b, a)
        out.copy_(a)
    path = tmp_path / "real.pt.trace.json"
    prof.export_chrome_trace(str(path))
    figs = trace_figures(path)
    by = {s.name: s for s in figs.ops}
    own = _own_sums(path)
    assert own["aten::mm"][2] < own["aten::mm"][1]  # mm has children (resolve_conj): self time is not its duration
    assert set(by) == set(own)
    for name, (calls, dur_us, self_us, flops) in own.items():
        s = by[name]
        want = (calls, dur_us / 1e3, self_us / 1e3)
        assert (s.calls, s.total_ms, s.host_ms) == pytest.approx(want), name
        assert (s.exec_ms + s.trans_ms) == pytest.approx(self_us / 1e3), name
    assert by["aten::mm"].calls == 2 and by["aten::mm"].input_shapes == ["[[64, 64], [64, 64]]"]
    # the trace recorded shapes and no FLOPs: they come from the shapes (2 per multiply-accumulate), on the matmul
    assert by["aten::mm"].flops == 2 * (2 * 64**3) and by["aten::mm"].flops_known and by["aten::mm"].dtype == "fp32"
    assert by["aten::copy_"].flops == 0 and by["aten::copy_"].bytes == 2 * 64 * 64 * 4
    assert by["aten::copy_"].calls == 1 and by["aten::copy_"].exec_ms == 0.0  # a host copy is data movement
    assert by["aten::copy_"].trans_ms == pytest.approx(own["aten::copy_"][2] / 1e3)
    assert by["aten::mm"].exec_ms == pytest.approx(own["aten::mm"][2] / 1e3) and by["aten::mm"].exec_ms > 0
    assert figs.transfers == [] and figs.kernels == [] and figs.gpu is None  # no device in a CPU recording
