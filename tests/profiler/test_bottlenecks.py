"""Each bottleneck rule alone, on the hand-built run of test_analysis (addmm 6 ms / 6 GFLOP, gelu 2 ms, copy_ 2 ms;
12 ms wall, 10 ms median): it fires on one side of its threshold and not on the other, with the figures it should."""
import dataclasses

import pytest

from profiler import bottlenecks as bn
from profiler.schema import TransferStat
from tests.profiler.test_analysis import GRAPH, hand_run, op


def ev(**kw):
    return bn.Evidence.of(hand_run(**kw))


def test_rules_run_in_order_and_rank_by_share():
    assert bn.RULES == [bn.slowest_ops, bn.slowest_nodes, bn.data_movement, bn.overhead, bn.memory_bound,
                        bn.low_flop_rate, bn.noisy_timing]
    found = bn.find(hand_run(noise="noisy"))
    assert [f.kind for f in found] == ["op", "node", "memory-bound", "op", "transfer", "overhead", "noise"]
    assert [f.share for f in found] == pytest.approx([0.6, 0.5, 0.4, 0.2, 0.2, 1 / 6, 0.0])


def test_slowest_ops():
    [mm, gelu] = bn.slowest_ops(ev())  # copy_ is a transfer: the data-movement rule speaks for it
    assert mm.title == "aten::addmm takes 60% of operator time" and mm.share == pytest.approx(0.6)
    assert "6 ms per inference over 2 calls, achieving 1000.0 GFLOP/s" in mm.evidence
    assert mm.fix.startswith("Matrix multiplies dominate")
    assert gelu.fix.startswith("Element-wise") and "GFLOP/s" not in gelu.evidence
    assert [f.title for f in bn.slowest_ops(bn.Evidence.of(hand_run(), top=1))] == [mm.title]
    small = hand_run(ops=[op("aten::addmm", 9.6), op("aten::gelu", 0.4)])  # 4% of operator time: not a finding
    assert [f.title for f in bn.slowest_ops(bn.Evidence.of(small))] == ["aten::addmm takes 96% of operator time"]


@pytest.mark.parametrize("name, start", [("aten::conv2d", "Convolutions"), ("aten::_softmax", "Attention"),
                                         ("aten::lstm", "Recurrent"), ("aten::embedding", "Lookups"),
                                         ("aten::mm", "Matrix"), ("my::thing", "Check whether")])
def test_fix_for(name, start):
    assert bn.fix_for(name).startswith(start)


def test_slowest_nodes():
    [f] = bn.slowest_nodes(ev())
    assert f.details == ["fc0", "fc1", "cp", "act0", "act1"]  # slowest first; 10 of 10 ms of graph time
    assert f.title == "The 5 slowest graph nodes hold 100% of graph time" and f.share == pytest.approx(0.5)
    assert "cp (aten.copy in enc.1) 2 ms" in f.evidence
    assert bn.slowest_nodes(ev(graph=[])) == []
    untimed = [dataclasses.replace(n, exec_ms=0.0, trans_ms=0.0) for n in GRAPH]
    assert bn.slowest_nodes(ev(graph=untimed)) == []


def test_data_movement():
    moved = [TransferStat("host", calls=1, bytes=2.5e6, time_ms=2.0)]
    [f] = bn.data_movement(ev(transfers=moved))
    assert f.title == "Data movement (T_trans) is 20% of operator time" and f.share == pytest.approx(0.2)
    assert f.evidence == "host data movement: host 2.50 MB in 2 ms" and f.fix.startswith("Copies and layout")
    assert bn.data_movement(ev(kind="cuda"))[0].fix.startswith("Upload inputs from pinned memory")
    few = [op("aten::addmm", 9.8), op("aten::copy_", trans_ms=0.2)]  # 2% of operator time
    assert bn.data_movement(ev(ops=few)) == []


def test_overhead():
    [f] = bn.overhead(ev())  # 2 of 12 ms wall outside any operator: over 15%
    assert f.share == pytest.approx(2 / 12) and "17% of wall time is outside any operator" in f.evidence
    assert bn.overhead(ev(wall_ms=11.0)) == []  # 1 of 11 ms, and only 7 calls
    tiny = [op("aten::addmm", 6.0), op("aten::view", 1.0, calls=400)]  # 2.5 us a call
    [f] = bn.overhead(ev(ops=tiny, wall_ms=7.0))
    assert f.title == "Many tiny ops and framework overhead: 401 op calls per inference"
    assert f.share == pytest.approx(1 / 7) and "400 calls take under 10 us each (14% of op time)" in f.evidence


def test_memory_bound():
    [f] = bn.memory_bound(ev())  # gelu + copy_, no FLOPs: 4 of 10 ms
    assert f.share == pytest.approx(0.4) and f.evidence == "mostly aten::gelu, aten::copy_"
    counted = [op("aten::addmm", 9.5), op("aten::gelu", 0.5)]  # 5%, and an addmm is no "add" (FLOPs counted or not)
    assert bn.memory_bound(ev(ops=counted)) == []
    assert [bn.is_memory_bound(n) for n in ["aten::add_", "aten::_softmax", "aten::copy_", "aten::addmm",
                                            "aten::baddbmm", "aten::mean"]] == [True, True, True, False, False, True]


def test_low_flop_rate_is_over_the_median_latency():
    # 6 GFLOP in a 10 ms median is 600 GFLOP/s, above half the best op's 1000: nothing, even though the
    # profiled wall time (14 ms, 429 GFLOP/s) would be below it
    assert bn.low_flop_rate(ev(wall_ms=14.0)) == []
    [f] = bn.low_flop_rate(ev(median_ms=20.0))
    assert f.title == "Low achieved FLOP/s: 300.0 GFLOP/s over the whole inference" and f.share == pytest.approx(0.7)
    assert "the best op reaches 1000.0 GFLOP/s" in f.evidence and "FLOPs known for 100.0%" in f.evidence
    assert bn.low_flop_rate(ev(ops=[op("aten::gelu", 2.0)], median_ms=20.0)) == []  # no FLOPs: no rate


def test_noisy_timing():
    assert bn.noisy_timing(ev()) == []
    [f] = bn.noisy_timing(ev(noise="unreliable"))
    assert f.title == "Timing is unreliable" and f.share == 0.0 and f.kind == "noise"
