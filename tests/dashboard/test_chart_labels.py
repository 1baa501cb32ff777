"""Issue 21, screens that read without hovering: the figures carry their own labels (dashboard.charts is pure, so
the labels are checked on the figures themselves; the browser test looks at them drawn)."""
import pandas as pd

from dashboard import charts
from profiler.analysis.frames import GraphView
from profiler.schema import LatencyStats
from profiler.traces.read import TraceEvent


def test_timeline_bars_are_named_inside():
    events = [TraceEvent("aten::addmm", "cpu_op", 0.0, 900.0, "1", "1"),
              TraceEvent("aten::gelu(Tensor self)", "cpu_op", 900.0, 100.0, "1", "1")]
    fig = charts.timeline_figure(events)
    [bars] = fig.data
    assert list(bars.text) == ["addmm", "gelu"] and bars.textposition == "inside"
    assert fig.layout.uniformtext.mode == "hide"  # a name that does not fit its bar is hidden, not spilled


def test_treemap_is_coloured_by_time_and_labelled_with_ms_and_share():
    frame = pd.DataFrame([{"id": "m", "parent": "", "label": "m", "exec_ms": 0.0, "trans_ms": 0.0, "own_ms": 0.0},
                          {"id": "m.a", "parent": "m", "label": "a", "exec_ms": 3.0, "trans_ms": 0.0, "own_ms": 3.0},
                          {"id": "m.b", "parent": "m", "label": "b", "exec_ms": 1.0, "trans_ms": 0.0, "own_ms": 1.0}])
    [tree] = charts.module_treemap(frame).data
    assert list(tree.marker.colors) == [0.0, 3.0, 1.0] and "ms" in tree.texttemplate
    assert "percentRoot" in tree.texttemplate


def test_breakdown_names_its_basis_and_shares():
    fig = charts.breakdown_bar({"T_exec": 5.0, "T_trans": 1.0, "unexplained": 4.0, "wall": 10.0})
    assert fig.layout.title.text == "Where the 10 ms median inference went"
    assert [b.name for b in fig.data] == ["T_exec 5 ms (50%)", "T_trans 1 ms (10%)", "unexplained 4 ms (40%)"]


def test_graph_names_its_slowest_nodes():
    nodes = [{"id": f"n{i}", "op": "aten.addmm", "exec_ms": float(i), "trans_ms": 0.0, "flops": 0.0, "x": i,
              "y": 0.0, "count": 1} for i in range(12)]
    fig = charts.graph_figure(GraphView(nodes=nodes, edges=[], depth=None))
    labels = [t for t in fig.data[-1].text if t]
    assert len(labels) == charts.GRAPH_LABELS and labels[-1] == "n11 11 ms"


def test_histogram_labels_sit_above_the_bars():
    stats = LatencyStats(samples_ms=[1.0, 1.1, 1.2, 2.0], median_ms=1.15, p90_ms=1.8, iqr_ms=0.2)
    fig = charts.latency_histogram(stats)
    assert {a.yref for a in fig.layout.annotations} == {"paper"} and all(a.y == 1.0 for a in fig.layout.annotations)
