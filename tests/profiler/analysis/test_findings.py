"""Each finding alone, on the hand-built run of test_frames (addmm 6 ms / 6 GFLOP, gelu 2 ms, copy_ 2 ms; 12 ms wall,
10 ms median) placed on a roofline: it fires on one side of its threshold and not on the other, with the figures it
should; and the findings and the recommendations, one engine, cannot disagree."""
import dataclasses

import pytest

from profiler.analysis import findings as fd
from profiler.analysis import recommend as rc
from profiler.analysis import roofline as rl
from profiler.analysis.why_slow import diagnose
from profiler.schema import OpStat, Peaks, TransferStat
from tests.profiler.analysis.test_frames import GRAPH, hand_run, op

# addmm's 6 GFLOP take 3 ms at this peak (compute-bound at 6 ms); gelu with no FLOPs or bytes is overhead-bound
PEAKS = Peaks(device="cpu", name="test", source="measured", fp32_gflops=2000.0, bf16_gflops=2000.0,
              int8_gops=2000.0, mem_bw_gbs=10.0)


def ev(peaks=PEAKS, top=3, **kw):
    run = hand_run(**kw)
    return fd.Evidence.of(run, rl.roofline(run, peaks), top=top)


def test_rules_run_in_order_and_rank_by_share():
    assert fd.RULES == [fd.slowest_ops, fd.slowest_nodes, fd.data_movement, fd.overhead, fd.memory_bound,
                        fd.low_flop_rate, fd.noisy_timing]
    run = hand_run(noise="noisy")
    found = fd.find(run, rl.roofline(run, PEAKS))
    assert [f.kind for f in found] == ["op", "node", "overhead", "op", "transfer", "noise"]
    assert [f.share for f in found] == pytest.approx([0.6, 0.5, 0.4, 0.2, 2 / 12, 0.0])


def test_slowest_ops():
    [mm, gelu] = fd.slowest_ops(ev())  # copy_ is a transfer: the data-movement rule speaks for it
    assert mm.title == "aten::addmm takes 60% of operator time" and mm.share == pytest.approx(0.6)
    # 6 ms profiled in a 12 ms profiled wall, 10 ms median: 5 ms on the median's basis, 6 GFLOP in it 1200 GFLOP/s
    assert "5 ms per inference in 2 calls, achieving 1200.0 GFLOP/s" in mm.evidence
    assert mm.fix.startswith("Matrix multiplies dominate")
    assert gelu.fix.startswith("Element-wise") and "GFLOP/s" not in gelu.evidence
    assert [f.title for f in fd.slowest_ops(ev(top=1))] == [mm.title]
    small = [op("aten::addmm", 9.6), op("aten::gelu", 0.4)]  # 4% of operator time: not a finding
    assert [f.title for f in fd.slowest_ops(ev(ops=small))] == ["aten::addmm takes 96% of operator time"]


@pytest.mark.parametrize("name, start", [("aten::conv2d", "Convolutions"), ("aten::_softmax", "Attention"),
                                         ("aten::lstm", "Recurrent"), ("aten::embedding", "Lookups"),
                                         ("aten::mm", "Matrix"), ("aten::native_batch_norm", "Batch norms"),
                                         ("quantized::linear_dynamic", "Matrix"), ("aten::add_", "Element-wise"),
                                         ("my::thing", "Check whether")])
def test_fix_for_reads_the_one_vocabulary(name, start):
    assert fd.fix_for(name).startswith(start)


def test_slowest_nodes():
    [f] = fd.slowest_nodes(ev())
    assert f.details == ["fc0", "fc1", "cp", "act0", "act1"]  # slowest first; 10 of 10 ms of graph time
    assert f.title == "The 5 slowest graph nodes hold 100% of graph time" and f.share == pytest.approx(0.5)
    assert "cp (aten.copy in enc.1) 2 ms" in f.evidence
    assert fd.slowest_nodes(ev(graph=[])) == []
    untimed = [dataclasses.replace(n, exec_ms=0.0, trans_ms=0.0) for n in GRAPH]
    assert fd.slowest_nodes(ev(graph=untimed)) == []


def test_data_movement_is_a_share_of_the_wall_time():
    [f] = fd.data_movement(ev())  # copy_'s 2 ms of T_trans in 12 ms profiled: 1.67 ms of the 10 ms median
    assert f.title == "Data movement is 17% of the time per inference" and f.share == pytest.approx(2 / 12)
    assert f.evidence.startswith("1.67 ms of 10 ms per inference (the median); host data movement")
    assert f.fix.startswith("Copies")
    assert fd.data_movement(ev(kind="cuda"))[0].fix.startswith("Upload inputs from pinned memory")
    few = [op("aten::addmm", 9.8), op("aten::copy_", trans_ms=0.2)]  # 0.2 of 12 ms
    assert fd.data_movement(ev(ops=few)) == []
    # a GPU's input upload, outside any operator, counts too
    upload = [TransferStat("H2D", calls=1, bytes=4e6, time_ms=3.0)]
    assert fd.movement_ms(hand_run(ops=few, transfers=upload)) == 3.0


def test_overhead_is_the_roofline_share():
    [f] = fd.overhead(ev())  # gelu (no work counted, overhead-bound) 2 ms + 2 ms outside any op, of 10
    assert f.share == pytest.approx(0.4) and f.title.startswith("Overhead-bound: 40% of the time")
    assert "17% of the time is outside any operator" in f.evidence
    worked = [dataclasses.replace(o, bytes=2e7) if o.name == "aten::gelu" else o for o in hand_run().ops]
    assert fd.overhead(ev(ops=worked, wall_ms=10.5)) == []  # gelu now memory-bound; 0.5 of 10.5 ms outside


def test_memory_bound_is_the_roofline_share():
    assert fd.memory_bound(ev()) == []  # nothing here moves counted bytes
    worked = [dataclasses.replace(o, bytes=2e7) if o.name == "aten::gelu" else o for o in hand_run().ops]
    [f] = fd.memory_bound(ev(ops=worked))  # 20 MB at 10 GB/s: a 2 ms roof, memory-bound
    assert f.share == pytest.approx(0.2) and f.evidence == "mostly aten::gelu"


def test_low_flop_rate_is_over_the_median_latency():
    # 6 GFLOP in the 20 ms median = 300 GFLOP/s vs addmm's 1200 (6 ms of a 24 ms profiled wall: 5 ms of the median)
    [f] = fd.low_flop_rate(ev(median_ms=20.0, wall_ms=24.0))
    assert f.title == "Low achieved FLOP/s: 300.0 GFLOP/s over the whole inference"
    assert fd.low_flop_rate(ev()) == []  # 600 GFLOP/s: over half the best


def test_noisy_timing():
    assert fd.noisy_timing(ev()) == []
    assert fd.noisy_timing(ev(noise="unreliable"))[0].title == "Timing is unreliable"


def test_findings_and_recommendations_cannot_disagree():
    """A run where the old Bottlenecks page called data movement and overhead out (3% of operator time; 15% of wall
    outside any operator) while Why slow's rules, with their own definitions, stayed silent (15% of wall; 50%
    overhead-bound). Now one engine answers, and each recommendation that acts on a finding comes with it."""
    ops = [OpStat("aten::addmm", calls=2, exec_ms=6.0, trans_ms=0.0, flops=6e9, bytes=1e6, category="compute"),
           OpStat("aten::relu", calls=200, exec_ms=2.5, trans_ms=0.0, bytes=1e3, category="compute"),
           OpStat("aten::copy_", calls=1, exec_ms=0.0, trans_ms=1.5, category="transfer")]
    gpu = dataclasses.replace(hand_run(ops=ops, wall_ms=14.0, kind="cuda",
                                       transfers=[TransferStat("H2D", calls=1, bytes=1e8, time_ms=1.5)]))
    d = diagnose(gpu, PEAKS, passes=frozenset({"cuda-graphs", "pinned-memory", "resident-inputs"}))
    kinds = {f.kind for f in d.findings}
    rules = {r.rule for r in d.recommendations}
    acts_on = {"overhead": "overhead", "transfers": "transfer"}
    for rule, kind in acts_on.items():
        assert (rule in rules) <= (kind in kinds), (rule, kinds)  # a recommendation never without its finding
    # and the finding that names overhead is exactly the share the rule acts on
    share = fd.overhead_share(d.roofline)
    assert ("overhead" in kinds) == (share >= fd.OVERHEAD_SHARE) == ("overhead" in rules)
    assert rc.rule_overhead(rc.Context(run=gpu, roof=d.roofline, peaks=PEAKS)) is not None


def test_a_findings_shapes_are_quoted_whole():
    """Issue 21: the evidence was cut at 120 characters, mid-way through a shape list."""
    shapes = [f"[[{i}28], [32, 128], [128, 128]]" for i in range(1, 6)]
    ops = [op("aten::addmm", 6.0, calls=2, flops=6e9, shapes=shapes), op("aten::gelu", 2.0, calls=4)]
    [mm, *_] = fd.slowest_ops(ev(ops=ops))
    assert mm.evidence.endswith(f"most common shapes {shapes[0]} | {shapes[1]} (and 3 more)")
