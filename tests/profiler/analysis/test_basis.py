"""One run, one story (profiler.analysis.basis): on a run shaped like the bert-tiny run of issue 21 (16 ms median,
68.3 ms per profiled inference, 65.08 ms of operator time, Σ node time 193 ms in the per-node timing), every time the
pages show either adds up to the median or is a stated share of it."""
import pytest
from tests.profiler.analysis.test_frames import GRAPH, hand_run, op

from profiler.analysis import basis, frames, roofline
from profiler.schema import Graph, Peaks

PEAKS = Peaks(device="cpu", name="t", source="measured", fp32_gflops=100.0, bf16_gflops=400.0, int8_gops=300.0,
              mem_bw_gbs=10.0)


def bert_tiny_like(median_ms=16.0, wall_ms=68.3, scale_graph=193.0 / 10.0, run_id="r", ops_factor=1.0):
    """Operators 65.08 ms in 68.3 ms profiled; the graph's nodes timed alone, 19.3x the ops' 10 ms."""
    ops = [op("aten::addmm", 40.0 * ops_factor, calls=24, flops=6e9, shapes=["[[1024, 128], [128, 128]]"]),
           op("aten::gelu", 15.0 * ops_factor, calls=4), op("aten::copy_", trans_ms=10.08 * ops_factor)]
    run = hand_run(ops=ops, wall_ms=wall_ms, median_ms=median_ms, run_id=run_id)
    nodes = [type(n)(**{**n.to_dict(), "exec_ms": n.exec_ms * scale_graph, "trans_ms": n.trans_ms * scale_graph})
             for n in GRAPH]
    run.graph = Graph(method="fx", nodes=nodes, exec_ms=sum(n.exec_ms for n in nodes),
                      trans_ms=sum(n.trans_ms for n in nodes), timed_nodes=len(nodes))
    return run


def test_every_time_adds_up_to_the_median():
    run = bert_tiny_like()
    b = basis.basis(run)
    assert b.op_scale == pytest.approx(16 / 68.3) and b.overhead == pytest.approx(68.3 / 16)
    parts = basis.breakdown(run)  # Overview's bar
    assert parts["wall"] == 16.0
    assert parts["T_exec"] + parts["T_trans"] + parts["unexplained"] == pytest.approx(16.0)
    explained = 65.08 * 16 / 68.3
    assert parts["T_exec"] + parts["T_trans"] == pytest.approx(explained)
    ops = frames.ops_frame_scaled(run)  # Operators table and the lesson
    assert ops["time_ms"].sum() == pytest.approx(explained)
    assert list(ops["share"]) == list(frames.ops_frame(run)["share"])  # shares as measured
    assert ops.loc[ops["name"] == "aten::addmm", "gflops_per_s"].item() == pytest.approx(6e9 / (40 * 16 / 68.3) / 1e6)
    # Graph page and the treemap: the nodes (Σ 193 ms) become their shares of what the operators explain
    assert frames.module_times_scaled(run)["own_ms"].sum() == pytest.approx(explained)
    view = frames.collapse_scaled(run, None)
    assert sum(n["exec_ms"] + n["trans_ms"] for n in view.nodes) == pytest.approx(explained)
    # Why slow: the headroom and time by bound are parts of the median, never more
    roof = roofline.roofline(run, PEAKS)  # compute operators and what no operator explains; copies are T_trans
    assert roof.headroom_ms <= 16.0
    assert sum(roof.time_by_bound.values()) + parts["T_trans"] == pytest.approx(16.0)
    assert max(p.time_ms for p in roof.points) == pytest.approx(40 * 16 / 68.3)


def test_the_lines_say_what_each_time_is():
    b = basis.basis(bert_tiny_like())
    line = b.per_inference_line()
    assert "scaled to the 16 ms median" in line and "68.3 ms" in line and "4.27x" in line
    assert "Σ 193 ms" in b.graph_line() and "16 ms median" in b.graph_line()
    agree = basis.basis(bert_tiny_like(median_ms=68.0))  # profiled as fast as unprofiled: nothing to scale
    assert not agree.scaled and "add up" in agree.per_inference_line()
    trace = basis.basis(hand_run(source="trace"))
    assert trace.op_scale == 1.0 and "totals over the imported trace" in trace.per_inference_line()


def test_a_comparison_agrees_with_its_speedup():
    """Each side on its own median's basis: the op diff and the module diff sum to the change in explained time,
    whatever each run's profiler overhead (the issue's `intermediate.dense 0.19 -> 10.70 ms` beside faster ops)."""
    base = bert_tiny_like()
    # after a pass: 30% of the profiled op time, and far less profiler overhead (2.5x, not 4.3x)
    new = bert_tiny_like(median_ms=8.0, wall_ms=20.0, scale_graph=3.0, run_id="n", ops_factor=0.3)
    c = frames.compare(base, new)
    explained = lambda r: sum(o.exec_ms + o.trans_ms for o in r.ops) * r.latency.median_ms / r.totals.wall_ms
    assert sum(d.delta_ms for d in c.ops) == pytest.approx(explained(new) - explained(base))
    assert all(d.status == "faster" for d in c.ops)
    assert sum(m.delta for m in c.modules) == pytest.approx(explained(new) - explained(base))
    assert all(m.delta < 0 for m in c.modules)


def test_the_change_in_the_median_is_split_into_operators_and_the_rest():
    """bert-tiny with dynamic int8 here: every operator faster (-0.12 ms) beside a slower median (+0.41 ms). The line
    under the diff says where the rest went."""
    base = bert_tiny_like()
    new = bert_tiny_like(median_ms=18.0, wall_ms=70.0, run_id="n", ops_factor=0.8)
    c = frames.compare(base, new)
    ops = sum(d.delta_ms for d in c.ops)
    assert ops < 0 < c.new_median_ms - c.base_median_ms
    assert frames.change_line(c) == (f"The median changed by +2 ms: the operators below account for {ops:+.3g} ms, "
                                     f"and time outside any operator (Python and framework overhead between them) "
                                     f"for {2 - ops:+.3g} ms.")
