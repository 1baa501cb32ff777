"""profiler.analysis on golden values: a hand-built run whose every figure is worked out by hand below, and two real
runs (OpLens's own BERT-base run on an H200, an imported AlexNet trace) cross-checked against sums made here from
the files themselves and against the figures in the README and tests/data/README.md."""
import dataclasses
import gzip
import json

import pytest
from testdata import DATA

from profiler.analysis import frames as analysis
from profiler.analysis.basis import breakdown
from profiler.analysis.frames import GraphView
from profiler.schema import (
    DeviceInfo,
    Graph,
    GraphNode,
    LatencyStats,
    ModelInfo,
    OpStat,
    ProfileConfig,
    ProfileRun,
    Totals,
)


def op(name, exec_ms=0.0, trans_ms=0.0, calls=1.0, flops=0.0, total_ms=None, shapes=()):
    return OpStat(name, calls=calls, exec_ms=exec_ms, trans_ms=trans_ms, total_ms=exec_ms + trans_ms
                  if total_ms is None else total_ms, flops=flops, flops_known=flops > 0, input_shapes=list(shapes),
                  category="transfer" if trans_ms else "compute")


def node(nid, opname, module, inputs, exec_ms=0.0, trans_ms=0.0, kind="call_function"):
    return GraphNode(id=nid, op=opname, kind=kind, module=module, inputs=list(inputs), exec_ms=exec_ms,
                     trans_ms=trans_ms)


# x -> enc.0.fc -> enc.0.act -> (copy in enc.1) -> enc.1.fc -> enc.1.act -> output: 8 ms exec, 2 ms copy
GRAPH = [node("x", "x", "", [], kind="placeholder"),
         node("fc0", "aten.addmm", "enc.0.fc", ["x"], 3.0), node("act0", "aten.gelu", "enc.0.act", ["fc0"], 1.0),
         node("cp", "aten.copy", "enc.1", ["act0"], trans_ms=2.0),
         node("fc1", "aten.addmm", "enc.1.fc", ["cp"], 3.0), node("act1", "aten.gelu", "enc.1.act", ["fc1"], 1.0),
         node("out", "output", "", ["act1"], kind="output")]


def hand_run(ops=None, wall_ms=12.0, median_ms=10.0, batch=4, graph=GRAPH, kind="cpu", noise="ok", source="registry",
             transfers=(), threads=2, run_id="r"):
    """By default: addmm 6 ms (2 calls, 6 GFLOP), gelu 2 ms (4 calls), copy_ 2 ms of T_trans; 12 ms profiled wall,
    10 ms median latency, batch 4."""
    ops = ops if ops is not None else [op("aten::addmm", 6.0, calls=2, flops=6e9, shapes=["[[4, 8], [8, 8]]"]),
                                       op("aten::gelu", 2.0, calls=4), op("aten::copy_", trans_ms=2.0)]
    exec_ms, trans_ms = sum(o.exec_ms for o in ops), sum(o.trans_ms for o in ops)
    g = Graph(method="fx", nodes=list(graph), exec_ms=sum(n.exec_ms for n in graph),
              trans_ms=sum(n.trans_ms for n in graph))
    return ProfileRun(id=run_id, created="", model=ModelInfo("m", source, 1, spec="m"),
                      device=DeviceInfo(kind, "x", threads, "2.13"), config=ProfileConfig(batch_size=batch),
                      latency=LatencyStats(samples_ms=[median_ms], median_ms=median_ms, ci_low_ms=median_ms,
                                           ci_high_ms=median_ms, iqr_ms=0.0, noise=noise),
                      totals=Totals(wall_ms=wall_ms, exec_ms=exec_ms, trans_ms=trans_ms,
                                    coverage=(exec_ms + trans_ms) / wall_ms,
                                    unexplained_ms=wall_ms - exec_ms - trans_ms,
                                    trans_label="host data movement", flop_coverage=1.0),
                      ops=ops, transfers=list(transfers), graph=g)


# ------------------------------------------------------------------ hand-built run

def test_ops_frame_shares_and_rates():
    f = analysis.ops_frame(hand_run())
    assert list(f["name"]) == ["aten::addmm", "aten::gelu", "aten::copy_"]
    assert list(f["time_ms"]) == [6.0, 2.0, 2.0]
    assert list(f["share"]) == pytest.approx([0.6, 0.2, 0.2])  # of T_exec + T_trans = 10 ms
    assert list(f["gflops_per_s"]) == pytest.approx([1000.0, 0.0, 0.0])  # 6e9 FLOP in 6 ms
    assert list(f["category"]) == ["compute", "compute", "transfer"]
    assert f.loc[0, "input_shapes"] == "[[4, 8], [8, 8]]"


def test_op_rate_uses_inclusive_time():
    # FLOPs sit on the wrapper: 2 GFLOP over 4 ms inclusive is 500 GFLOP/s, however small its 1 ms self time
    assert analysis.op_gflops_per_s(op("aten::linear", 1.0, flops=2e9, total_ms=4.0)) == pytest.approx(500.0)
    assert analysis.op_gflops_per_s(op("aten::linear", 1.0, flops=2e9, total_ms=0.0)) == 0.0
    assert analysis.op_gflops_per_s(op("aten::gelu", 1.0)) == 0.0


def test_throughput_is_batch_over_the_median_latency():
    assert analysis.throughput_per_s(hand_run()) == pytest.approx(400.0)  # 4 samples per 10 ms, not per 12 ms wall
    assert analysis.throughput_per_s(hand_run(median_ms=0.0)) == 0.0


def test_flop_rate_of_a_live_run_is_over_the_median_latency():
    rate = analysis.flop_rate(hand_run())
    assert rate.flops == 6e9 and rate.gflops_per_s == pytest.approx(600.0)  # 6 GFLOP / 10 ms
    assert rate.coverage_text() == "FLOPs known for 100.0% of exec time"


def test_flop_rate_of_an_imported_trace_is_over_its_wall_time():
    # a trace's ops are totals over the trace; its latency is one step: the wall time is the matching denominator
    rate = analysis.flop_rate(hand_run(source="trace"))
    assert rate.gflops_per_s == pytest.approx(500.0)  # 6 GFLOP / 12 ms


def test_breakdown_is_on_the_medians_basis():
    # 12 ms profiled wall, 10 ms median: operator times x 10/12, and the parts add up to the median
    assert breakdown(hand_run()) == pytest.approx({"T_exec": 8.0 * 10 / 12, "T_trans": 2.0 * 10 / 12,
                                                   "unexplained": 10 - 10 * 10 / 12, "wall": 10.0})
    # more operator time than wall (nested device work) shows no negative unexplained
    assert breakdown(hand_run(wall_ms=9.0))["unexplained"] == 0.0


def test_filter_ops():
    f = analysis.ops_frame(hand_run())
    assert list(analysis.filter_ops(f, name="ADD")["name"]) == ["aten::addmm"]
    assert list(analysis.filter_ops(f, shape="8, 8")["name"]) == ["aten::addmm"]
    assert list(analysis.filter_ops(f, category="transfer")["name"]) == ["aten::copy_"]
    assert list(analysis.filter_ops(f, name="aten", category="compute")["name"]) == ["aten::addmm", "aten::gelu"]


def test_module_times_tree():
    t = analysis.module_times(hand_run()).set_index("id")
    assert list(t.index) == ["m", "enc", "enc.0", "enc.0.act", "enc.0.fc", "enc.1", "enc.1.act", "enc.1.fc"]
    assert t.loc["enc.1", "parent"] == "enc" and t.loc["enc", "parent"] == "m" and t.loc["m", "parent"] == ""
    assert t.loc["enc.1", "trans_ms"] == 2.0 and t.loc["enc.1", "own_ms"] == 2.0  # the copy node's own module
    assert t.loc["enc.0.fc", "own_ms"] == 3.0 and t.loc["enc", "own_ms"] == 0.0  # own time, not inclusive
    assert t["own_ms"].sum() == pytest.approx(10.0)
    assert t.loc["enc.1.fc", "label"] == "fc"


def test_collapse_to_depth_one_merges_the_encoder():
    v = analysis.collapse(hand_run(), 1)
    assert [n["id"] for n in v.nodes] == ["x", "enc", "out"]
    enc = v.nodes[1]
    assert (enc["count"], enc["exec_ms"], enc["trans_ms"]) == (5, 8.0, 2.0)
    assert enc["op"] == "5 ops: aten.addmm x2, aten.gelu x2, aten.copy x1"
    assert v.edges == [{"source": "x", "target": "enc", "trans_ms": 0.0},
                       {"source": "enc", "target": "out", "trans_ms": 0.0}]
    assert [(n["x"], n["y"]) for n in v.nodes] == [(0, 0), (1, 0), (2, 0)]


def test_collapse_weights_edges_by_the_copy_they_carry():
    v = analysis.collapse(hand_run(), 3)
    assert [n["id"] for n in v.nodes] == ["x", "enc.0.fc", "enc.0.act", "enc.1", "enc.1.fc", "enc.1.act", "out"]
    weights = {(e["source"], e["target"]): e["trans_ms"] for e in v.edges}
    assert weights[("enc.1", "enc.1.fc")] == 2.0 and weights[("enc.0.fc", "enc.0.act")] == 0.0
    every = analysis.collapse(hand_run(), None)
    assert len(every.nodes) == 7 and {"source": "cp", "target": "fc1", "trans_ms": 2.0} in every.edges
    assert analysis.module_depths(hand_run()) == 3


def test_layout_layers_and_centres():
    view = GraphView(nodes=[{"id": i} for i in "abcd"], edges=[{"source": s, "target": t} for s, t in
                                                               ["ab", "ac", "bd", "cd"]], depth=None)
    analysis.layout(view)
    assert {n["id"]: (n["x"], n["y"]) for n in view.nodes} == {"a": (0, 0), "b": (1, -0.5), "c": (1, 0.5),
                                                               "d": (2, 0)}


def test_speedup_and_its_range():
    b = LatencyStats(samples_ms=[], median_ms=10.0, ci_low_ms=9.0, ci_high_ms=11.0)
    n = LatencyStats(samples_ms=[], median_ms=5.0, ci_low_ms=4.0, ci_high_ms=6.0)
    assert analysis.speedup(b, n) == pytest.approx((2.0, 1.5, 2.75))  # 10/5, 9/6, 11/4
    assert analysis.speedup(b, LatencyStats(samples_ms=[])) == (0.0, 0.0, 0.0)


def test_compare_per_op_statuses_and_order():
    # profiled as long as their medians: operator times on the median's basis are as recorded (test_basis scales)
    base = hand_run(ops=[op("aten::addmm", 6.0), op("aten::gelu", 2.0), op("aten::copy_", trans_ms=2.0),
                         op("aten::dropout", 0.5)], wall_ms=10.0)
    new = hand_run(ops=[op("aten::addmm", 3.0), op("aten::gelu", 2.05), op("aten::copy_", trans_ms=2.6),
                        op("aten::mkldnn_linear", 1.0)], median_ms=5.0, wall_ms=5.0, threads=4, run_id="n")
    c = analysis.compare(base, new)
    assert [(d.name, d.status) for d in c.ops] == [("aten::addmm", "faster"), ("aten::mkldnn_linear", "new"),
                                                   ("aten::copy_", "slower"), ("aten::dropout", "removed"),
                                                   ("aten::gelu", "same")]  # |delta| 3, 1, 0.6, 0.5, 0.05
    assert c.ops[0].ratio == pytest.approx(2.0) and c.ops[0].delta_ms == pytest.approx(-3.0)
    assert c.speedup == pytest.approx(2.0) and (c.base_id, c.new_id) == ("r", "n")
    assert not c.same_setup and c.setup_differences == ["threads: 2 vs 4"]
    frame = analysis.op_diff_frame(c, ["new", "removed"])
    assert list(frame["name"]) == ["aten::mkldnn_linear", "aten::dropout"]
    assert frame["ratio"].isna().all()  # no before/after ratio for an operator on one side only (not 0.000)


# ------------------------------------------------------------------ real runs

@pytest.fixture(scope="module")
def h200_bert():
    return ProfileRun.from_dict(json.loads((DATA / "h200_bert_base_live.run.json").read_text()))


def test_real_run_frame_adds_up_to_its_totals(h200_bert):
    f = analysis.ops_frame(h200_bert)
    t = h200_bert.totals
    assert f["time_ms"].sum() == pytest.approx(t.exec_ms + t.trans_ms, rel=1e-9)
    assert f["share"].sum() == pytest.approx(1.0)
    assert f.loc[0, "name"] == "aten::addmm" and f.loc[0, "share"] == pytest.approx(0.915, abs=0.001)


def test_real_run_flop_rate_and_throughput(h200_bert):
    rate = analysis.flop_rate(h200_bert)
    # the README: BERT-base batch 8 seq 128 is 178.79 GFLOP per inference
    assert rate.flops / 1e9 == pytest.approx(178.79, abs=0.005)
    assert rate.gflops_per_s == pytest.approx(178.787475456e9 / (h200_bert.latency.median_ms * 1e6), rel=1e-9)
    assert 25_000 < rate.gflops_per_s < 26_000  # 178.8 GFLOP in 7.02 ms
    assert analysis.throughput_per_s(h200_bert) == pytest.approx(8000 / 7.017727851867676)


def test_imported_trace_transfers_match_a_hand_sum_of_the_file():
    from profiler.traces.importer import import_trace

    run = import_trace(DATA / "alexnet_a100.pt.trace.json.gz")
    events = json.loads(gzip.decompress((DATA / "alexnet_a100.pt.trace.json.gz").read_bytes()))["traceEvents"]
    memcpy = [e for e in events if e.get("cat") == "gpu_memcpy" and e.get("ph") == "X"]
    kernels = [e for e in events if e.get("cat") == "kernel" and e.get("ph") == "X"]
    assert len(memcpy) == 16 and sum(e["dur"] for e in memcpy) == pytest.approx(55_503, abs=1)  # tests/data README
    f = analysis.ops_frame(run)
    assert f.loc[f["category"] == "transfer", "trans_ms"].sum() == pytest.approx(sum(e["dur"] for e in memcpy) / 1e3,
                                                                                abs=1e-3)
    assert f["exec_ms"].sum() == pytest.approx(sum(e["dur"] for e in kernels) / 1e3, abs=0.02)  # 10,692 us
    b = breakdown(run)  # an imported trace: totals over the trace, as they are
    assert b["T_trans"] == pytest.approx(55.503, abs=1e-3) and b["wall"] == pytest.approx(run.totals.wall_ms)
    [h2d] = run.transfers
    assert (h2d.direction, h2d.calls, h2d.bytes) == ("H2D", 16, 244_403_360)


def _chain(n_modules, per_module=2):
    """A graph of `n_modules` blocks enc.<i>.fc, each of `per_module` nodes, in a chain."""
    nodes, prev = [], "x"
    for i in range(n_modules):
        for j in range(per_module):
            nid = f"n{i}_{j}"
            nodes.append(node(nid, "aten.addmm", f"enc.{i}.fc", [prev], 1.0))
            prev = nid
    return nodes


def test_default_depth():
    assert analysis.default_depth(hand_run()) is None  # 7 nodes: every node
    assert analysis.default_depth(hand_run(graph=_chain(30, 6))) == 2  # 180 nodes; depth 1 is one group, 2 is 30
    assert analysis.default_depth(hand_run(graph=_chain(10, 16))) == 3  # never 25 groups: the deepest there is
    flat = [dataclasses.replace(n, module="") for n in _chain(10, 16)]
    assert analysis.default_depth(hand_run(graph=flat)) is None  # no modules to collapse to


def test_the_cli_summary_prints_the_same_rates():
    from profiler.cli.render import render_run

    text = render_run(hand_run())
    assert "throughput 400.0 samples/s" in text  # analysis.throughput_per_s
    assert "6 GFLOP per inference, 600.0 GFLOP/s achieved" in text  # analysis.flop_rate
    [mm] = [line for line in text.splitlines() if line.startswith("aten::addmm")]
    # analysis.op_gflops_per_s on the median's basis, as the Operators page: 6 ms profiled is 5 ms of the 10 ms median
    assert "1200.0" in mm.split() and "5.00" in mm.split()
