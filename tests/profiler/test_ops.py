"""profiler.ops, the live path from torch.profiler events to OpStat / TransferStat / Totals, on hand-made events whose
sums are worked out by hand, and on one real torch.profiler recording checked against a sum of its own events."""
from types import SimpleNamespace

import pytest
import torch

from profiler import ops
from profiler.flops import OpFlops


def evt(name, self_us=0.0, total_us=None, shapes=None, dtypes=None, mem=0, device="DeviceType.CPU", kernels=(),
        children=(), parent=None, self_dev_us=0.0, dev_total_us=0.0, annotation=False):
    total = self_us if total_us is None else total_us
    return SimpleNamespace(name=name, self_cpu_time_total=self_us, cpu_time_total=total, input_shapes=shapes or [],
                           input_dtypes=dtypes or [], self_cpu_memory_usage=mem,
                           self_device_memory_usage=mem, device_type=device, kernels=list(kernels),
                           cpu_children=list(children), cpu_parent=parent, self_device_time_total=self_dev_us,
                           device_time_total=dev_total_us, is_user_annotation=annotation, flops=0)


def two_inferences():
    """Two profiled inferences on a CPU: per inference one addmm (300 us self, 400 us inclusive) and one copy_ of a
    4x8 float tensor (100 us), plus events that are not operators."""
    out = []
    for mem in (1000, -50):  # a freed block does not count against the op
        out += [evt("aten::addmm", 300, 400, shapes=[[4, 8], [8, 8]], mem=mem),
                evt("aten::copy_", 100, shapes=[[4, 8], [4, 8]], dtypes=["float", "float"])]
    out += [evt("ProfilerStep#1", 900), evt("[memory]"), evt("my_region", 50, annotation=True),
            evt("void gemm_kernel", 70, device="DeviceType.CUDA")]
    return out


def test_op_stats_per_inference():
    stats = ops.op_stats(two_inferences(), iterations=2, on_cuda=False,
                         flops=OpFlops({"aten::addmm": 512.0}, {"aten::addmm"}))
    assert [s.name for s in stats] == ["aten::addmm", "aten::copy_"]  # not steps, annotations, memory or kernels
    mm, cp = stats
    assert (mm.calls, mm.exec_ms, mm.trans_ms, mm.total_ms) == pytest.approx((1, 0.3, 0.0, 0.4))
    assert mm.memory_bytes == 500 and mm.flops == 512.0 and mm.flops_known and mm.category == "compute"
    assert mm.input_shapes == ["[[4, 8], [8, 8]]"]
    assert (cp.exec_ms, cp.trans_ms, cp.category, cp.flops_known) == (0.0, pytest.approx(0.1), "transfer", False)


def test_totals_split_exec_and_trans_against_wall():
    stats = ops.op_stats(two_inferences(), iterations=2, on_cuda=False, flops=OpFlops())
    t = ops.totals(stats, wall_ms=1.0, on_cuda=False, flop_coverage=0.75)
    assert (t.exec_ms, t.trans_ms, t.coverage, t.unexplained_ms) == pytest.approx((0.3, 0.1, 0.4, 0.6))
    assert t.trans_label == ops.HOST_TRANSFER_LABEL and t.flop_coverage == 0.75
    assert ops.totals(stats, wall_ms=0.0, on_cuda=True).coverage == 0.0


def test_transfer_stats_on_a_cpu():
    [host] = ops.transfer_stats(two_inferences(), iterations=2, on_cuda=False)
    assert host.direction == "host" and host.calls == 1
    assert host.bytes == 4 * 8 * 4 and host.time_ms == pytest.approx(0.1)  # one 4x8 fp32 copy per inference
    assert host.bandwidth_gbps == pytest.approx(128 / 0.1e6)
    # bytes from a separate detail pass (one inference, a 16x8 bf16 copy) scaled to the timed pass
    detail = [evt("aten::copy_", 1, shapes=[[16, 8], [16, 8]], dtypes=["c10::BFloat16", "float"])]
    [host] = ops.transfer_stats(two_inferences(), iterations=2, on_cuda=False, detail=detail, detail_iterations=1)
    assert host.bytes == 16 * 8 * 2


def test_transfer_directions_on_a_gpu():
    h2d = evt("aten::copy_", 5, shapes=[[256]], dtypes=["float"], self_dev_us=40,
              kernels=[SimpleNamespace(name="Memcpy HtoD (Pageable -> Device)")])
    d2h_inner = evt("aten::copy_", 5, shapes=[[64]], dtypes=["c10::Half"], self_dev_us=10,
                    kernels=[SimpleNamespace(name="Memcpy DtoH (Device -> Pinned)")])
    # a wrapper's own device time goes where the copy_ inside it went
    to_cpu = evt("aten::to", 8, self_dev_us=2, children=[evt("aten::_to_copy", 6, children=[d2h_inner])])
    d2d = evt("aten::copy_", 2, shapes=[[32]], dtypes=["float"], self_dev_us=3)  # device time, no memcpy name
    stats = {t.direction: t for t in ops.transfer_stats([h2d, to_cpu, d2h_inner, d2d], iterations=1, on_cuda=True)}
    assert set(stats) == {"H2D", "D2H", "D2D"}
    assert (stats["H2D"].bytes, stats["H2D"].time_ms) == (1024, pytest.approx(0.04))
    assert (stats["D2H"].bytes, stats["D2H"].calls, stats["D2H"].time_ms) == (128, 1, pytest.approx(0.012))
    assert (stats["D2D"].bytes, stats["D2D"].time_ms) == (128, pytest.approx(0.003))
    assert stats["H2D"].label == ops.DEVICE_TRANSFER_LABEL


def test_time_by_tag_goes_to_the_innermost_tag():
    outer = evt("oplens::node::encoder")
    inner = evt("oplens::node::encoder.fc", parent=outer)
    events = [evt("aten::addmm", 200, parent=inner), evt("aten::copy_", 50, parent=inner),
              evt("aten::gelu", 30, parent=outer), evt("aten::add", 10)]  # untagged: nowhere
    got = ops.time_by_tag(events, "oplens::node::", iterations=2, on_cuda=False)
    assert got == {"encoder.fc": pytest.approx((0.1, 0.025, 0.0)), "encoder": pytest.approx((0.015, 0.0, 0.0))}


def test_a_real_recording_adds_up(one_thread):
    """torch.profiler on two matmuls and a copy: the op stats sum to the events' own self times."""
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    with torch.profiler.profile(record_shapes=True) as prof:
        for _ in range(2):
            torch.mm(a, b)
            a.clone()
    events = prof.events()
    stats = {s.name: s for s in ops.op_stats(events, iterations=2, on_cuda=False)}
    assert stats["aten::mm"].calls == 1 and stats["aten::mm"].flops == 2 * 64 ** 3 and stats["aten::mm"].flops_known
    mm_self_us = sum(e.self_cpu_time_total for e in events if e.name == "aten::mm")
    assert stats["aten::mm"].exec_ms == pytest.approx(mm_self_us / 1e3 / 2)
    assert stats["aten::clone"].category == "transfer" and stats["aten::clone"].exec_ms == 0.0
    [host] = ops.transfer_stats(events, iterations=2, on_cuda=False)
    assert host.bytes == 64 * 64 * 4  # one fp32 64x64 copy per inference, inside clone
