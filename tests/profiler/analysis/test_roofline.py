"""Roofline arithmetic on hand-built runs, the overhead-bound definition, bytes counted at the dispatcher, and a
tiny MLP at batch 1 called overhead-bound on a live run."""
import pytest
import torch

from profiler.analysis import roofline as rl
from profiler.measure import flops
from profiler.measure import peaks as peaks_mod
from profiler.schema import (
    DeviceInfo,
    Graph,
    GraphNode,
    LatencyStats,
    ModelInfo,
    OpStat,
    Peaks,
    ProfileConfig,
    ProfileRun,
    Totals,
)

PEAKS = Peaks(device="cpu", name="test", source="measured", fp32_gflops=100.0, bf16_gflops=400.0, int8_gops=300.0,
              mem_bw_gbs=10.0)


def hand_run(ops, wall_ms=None, dtype="float32", nodes=None):
    exec_ms = sum(o.exec_ms for o in ops)
    wall = wall_ms if wall_ms is not None else exec_ms
    return ProfileRun(id="r", created="", model=ModelInfo("m", "registry", 1), device=DeviceInfo("cpu", "x", 2, "2.13"),
                      config=ProfileConfig(dtype=dtype), latency=LatencyStats(samples_ms=[wall], median_ms=wall),
                      totals=Totals(wall_ms=wall, exec_ms=exec_ms, trans_ms=0.0, coverage=1.0,
                                    unexplained_ms=wall - exec_ms),
                      ops=ops, graph=Graph(method="fx", nodes=nodes or []))


def test_point_arithmetic():
    # 2 GFLOP and 0.1 GB in 40 ms: compute roof 20 ms (100 GFLOP/s), memory roof 10 ms (10 GB/s)
    p = rl.point("aten::mm", 2e9, 1e8, 40.0, 100.0, 10.0)
    assert p.intensity == pytest.approx(20.0)
    assert p.achieved_gflops == pytest.approx(50.0) and p.achieved_gbs == pytest.approx(2.5)
    assert p.compute_ms == pytest.approx(20.0) and p.memory_ms == pytest.approx(10.0)
    assert p.roof_ms == pytest.approx(20.0) and p.headroom_ms == pytest.approx(20.0)
    assert p.bound == "compute"


def test_memory_bound_when_bytes_dominate():
    p = rl.point("aten::add", 0.0, 1e9, 150.0, 100.0, 10.0)  # 100 ms at 10 GB/s
    assert p.bound == "memory" and p.roof_ms == pytest.approx(100.0) and p.headroom_ms == pytest.approx(50.0)


def test_overhead_bound_definition():
    # 1 us of work per call in 100 calls taking 5 ms: roof 0.1 ms < 10% of 5 ms, 1 us per call < 20 us
    p = rl.point("aten::addmm", 100 * 1e5, 0.0, 5.0, 100.0, 10.0, calls=100)
    assert p.bound == "overhead"
    # the same roof in one big call is not overhead: 100 us of work in that call
    assert rl.point("aten::addmm", 1e7, 0.0, 5.0, 100.0, 10.0, calls=1).bound == "compute"
    # near its roof: compute-bound however small
    assert rl.point("aten::addmm", 1e5, 0.0, 0.0015, 100.0, 10.0, calls=1).bound == "compute"


def test_roofline_floor_headroom_and_time_by_bound():
    ops = [OpStat("aten::addmm", calls=1, exec_ms=40.0, trans_ms=0.0, flops=2e9, bytes=1e8),
           OpStat("aten::add", calls=1, exec_ms=15.0, trans_ms=0.0, bytes=1e8),
           OpStat("aten::view", calls=50, exec_ms=5.0, trans_ms=0.0)]
    r = rl.roofline(hand_run(ops, wall_ms=65.0), PEAKS)
    assert r.dtype == "fp32" and r.peak_gflops == 100.0 and r.ridge_intensity == pytest.approx(10.0)
    assert r.floor_ms == pytest.approx(20.0 + 10.0 + 0.0)
    assert r.headroom_ms == pytest.approx(20.0 + 5.0 + 5.0)
    assert r.time_by_bound == pytest.approx({"compute": 40.0, "memory": 15.0, "overhead": 5.0 + 5.0})
    assert r.verdict == "compute" and r.measured_ms == 65.0


def test_ceiling_follows_the_dtype():
    ops = [OpStat("aten::mm", calls=1, exec_ms=10.0, trans_ms=0.0, flops=2e9, bytes=1e6)]
    assert rl.roofline(hand_run(ops, dtype="bfloat16"), PEAKS).peak_gflops == 400.0
    q = [OpStat("quantized::linear_dynamic", calls=1, exec_ms=10.0, trans_ms=0.0, flops=2e9, bytes=1e6)]
    assert rl.roofline(hand_run(q), PEAKS).dtype == "int8"


def test_families_merge_flops_with_their_time():
    ops = [OpStat("aten::convolution", calls=4, exec_ms=0.1, trans_ms=0.0, flops=4e9, bytes=1e6),
           OpStat("aten::mkldnn_convolution", calls=4, exec_ms=39.9, trans_ms=0.0)]
    (p,) = rl.roofline(hand_run(ops), PEAKS).points
    assert p.name == "convolution" and p.time_ms == pytest.approx(40.0) and p.flops == 4e9 and p.calls == 4


def test_imported_runs_take_bytes_from_shapes():
    ops = [OpStat("aten::add", calls=2, exec_ms=1.0, trans_ms=0.0, input_shapes=["[[1000], [1000], []]"])]
    (p,) = rl.roofline(hand_run(ops), PEAKS).points
    assert p.bytes_source == "shapes" and p.bytes == pytest.approx((2000 + 1000) * 4 * 2)


def test_node_points_use_edges_for_bytes():
    nodes = [GraphNode("x", "x", "placeholder", "", [], output_shape="[10, 100]", output_dtype="torch.float32"),
             GraphNode("fc", "aten::linear", "call_function", "fc", ["x"], output_shape="[10, 50]",
                       output_dtype="torch.float32", flops=1e5, exec_ms=1.0)]
    (p,) = rl.roofline(hand_run([], wall_ms=1.0, nodes=nodes), PEAKS).nodes
    assert p.kind == "node" and p.bytes == pytest.approx((1000 + 500) * 4) and p.flops == 1e5


def test_bytes_counter_counts_inputs_and_outputs_not_views():
    a, b = torch.ones(64, 32), torch.ones(32, 16)
    _, moved = flops.dispatch_counts_and_bytes(lambda: torch.nn.functional.linear(a, b.t()).view(-1))
    assert moved["aten::mm"] == (64 * 32 + 32 * 16 + 64 * 16) * 4  # linear counts as the kernel it runs
    assert moved.get("aten::view", 0) == 0 and "aten::linear" not in moved


def test_tiny_mlp_at_batch_1_is_overhead_bound(fast_config):
    import profiler

    run = profiler.profile(profiler.load_model("mlp-tiny", batch_size=1), fast_config)
    assert any(o.bytes > 0 for o in run.ops)
    r = rl.roofline(run, PEAKS)
    assert r.verdict == "overhead", r.time_by_bound
    assert rl.share(r, "overhead") > 0.5 and rl.share(r, "compute") < 0.25


def test_imported_runs_take_flops_from_shapes():
    ops = [OpStat("aten::addmm", calls=2, exec_ms=1.0, trans_ms=0.0,
                  input_shapes=["[[512], [141, 512], [512, 512]]", "[[2048], [141, 512], [512, 2048]]"]),
           OpStat("aten::_flash_attention_forward", calls=1, exec_ms=1.0, trans_ms=0.0,
                  input_shapes=["[[1, 141, 8, 64], [1, 141, 8, 64], [1, 141, 8, 64]]"])]
    points = {p.name: p for p in rl.roofline(hand_run(ops), PEAKS).points}
    mm = (2 * 141 * 512 * 512 + 2 * 141 * 512 * 2048) / 2 * 2
    assert points["aten::addmm"].flops == pytest.approx(mm)
    assert points["aten::_flash_attention_forward"].flops == pytest.approx(4 * 8 * 141 * 141 * 64)


def test_imported_gpu_trace_on_its_spec_roofline():
    from profiler.traces import importer as trace_import

    run = trace_import.import_trace("tests/data/h100_bert_small.pt.trace.json.gz")
    peaks = peaks_mod.for_run(run)
    assert peaks.source == "spec"
    r = rl.roofline(run, peaks)
    assert any(p.flops > 0 for p in r.points) and r.floor_ms > 0 and any("spec" in n for n in r.notes)
