"""A run's graph in Model Explorer: the files written parse as Model Explorer's own types and carry the run's per-node
times and FLOPs; the viewer serves them on loopback; the CLI writes them or says why not in one line."""
import json
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from profiler import store
from profiler.analysis import roofline as rl
from profiler.schema import Graph, Peaks
from profiler.viewers import model_explorer as gv

PEAKS = Peaks(device="cpu", name="t", source="measured", fp32_gflops=100.0, bf16_gflops=400.0, int8_gops=300.0,
              mem_bw_gbs=10.0)


@pytest.fixture(scope="module")
def exported(tiny_bert_run, tmp_path_factory):
    run, root = tiny_bert_run
    return run, root, gv.export(run, tmp_path_factory.mktemp("explorer"), PEAKS)


def test_graph_file_is_the_runs_graph_in_model_explorers_types(exported):
    dacite = pytest.importorskip("dacite")
    builder = pytest.importorskip("model_explorer.graph_builder")
    run, _, files = exported
    data = json.loads(files.graph.read_text())
    collection = dacite.from_dict(builder.GraphCollection, data, config=dacite.Config(strict=True))
    (graph,) = collection.graphs
    assert graph.id == "bert-tiny" and [n.id for n in graph.nodes] == [n.id for n in run.graph.nodes]
    ids = {n.id for n in graph.nodes}
    assert all(e.sourceNodeId in ids for n in graph.nodes for e in n.incomingEdges)
    node = next(n for n in graph.nodes if n.id == "linear")  # the first query projection
    source = next(n for n in run.graph.nodes if n.id == "linear")
    assert node.namespace == source.module.replace(".", "/") and node.label == "linear"
    assert node.incomingEdges[0].sourceNodeId == source.inputs[0]
    assert node.outputsMetadata[0].attrs[0].value == f"{source.output_dtype}{source.output_shape.replace(' ', '')}"


def test_overlays_carry_the_runs_per_node_times_and_flops(exported):
    dacite = pytest.importorskip("dacite")
    builder = pytest.importorskip("model_explorer.node_data_builder")
    run, _, files = exported
    assert [p.name for p in files.overlays] == ["exec_ms.json", "trans_ms.json", "gflop.json", "roofline_bound.json"]
    data = {p.stem: json.loads(p.read_text())["bert-tiny"] for p in files.overlays}
    for d in data.values():
        dacite.from_dict(builder.GraphNodeData, d, config=dacite.Config(strict=True))
    timed = [n for n in run.graph.nodes if n.exec_ms > 0]
    assert len(timed) > 20
    for n in timed:
        assert data["exec_ms"]["results"][n.id]["value"] == pytest.approx(n.exec_ms, rel=1e-3)
        assert data["trans_ms"]["results"][n.id]["value"] == pytest.approx(n.trans_ms, rel=1e-3)
        assert data["gflop"]["results"][n.id]["value"] == pytest.approx(n.flops / 1e9, rel=1e-3)
    assert data["gflop"]["results"]["linear"]["value"] > 0  # a Linear does work; its FLOPs are on its node
    bounds = {i: p.bound for i, p in rl.node_point_map(run, PEAKS).items()}
    assert {i: r["value"] for i, r in data["roofline_bound"]["results"].items()} == {
        i: gv.BOUNDS[b] for i, b in bounds.items()}


def test_viewer_serves_the_graph_on_loopback(exported, tmp_path):
    pytest.importorskip("model_explorer")
    _, _, files = exported
    viewer = gv.start(files, log=tmp_path / "me.log")
    try:
        assert viewer.url.startswith(f"http://127.0.0.1:{viewer.port}/?data=")
        with urllib.request.urlopen(viewer.url, timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        query = urllib.parse.quote(str(files.graph))
        with urllib.request.urlopen(f"http://127.0.0.1:{viewer.port}/api/v1/read_text_file?path={query}",
                                    timeout=10) as r:
            assert json.loads(json.loads(r.read())["content"]) == json.loads(files.graph.read_text())
        assert str(files.overlays[0]) in urllib.parse.unquote(viewer.url)
    finally:
        viewer.stop()
    assert viewer.process.poll() is not None


def test_cli_exports_or_says_why_not(exported, tmp_path):
    run, root, _ = exported
    out = subprocess.run([sys.executable, "-m", "profiler", "explore", run.id, "--runs-dir", str(root), "--export",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "x" / "exec_ms.json").read_text())["bert-tiny"]["results"]
    no_graph = run.from_dict({**run.to_dict(), "id": "no-graph-run"})
    no_graph.graph = Graph(method="none")
    store.save(no_graph, tmp_path / "runs")
    out = subprocess.run([sys.executable, "-m", "profiler", "explore", "no-graph-run", "--runs-dir",
                          str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: run no-graph-run has no graph")
    assert "Traceback" not in out.stderr
