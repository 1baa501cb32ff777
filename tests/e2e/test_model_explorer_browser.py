"""Model Explorer, in a real headless Chromium, opens the graph OpLens wrote with its per-node overlays: the graph's
label, its layers and the node-data tables with the run's own times (what JSON checks alone cannot prove)."""
import shutil
from pathlib import Path

import pytest

from profiler import store
from profiler.viewers import model_explorer as gv

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("model_explorer")
DATA = Path(__file__).resolve().parents[1] / "data" / "explain_bert_tiny_int8"


def test_model_explorer_shows_the_graph_and_its_overlays(tmp_path):
    run = store.load("20261126-024435-bert-tiny-5c208c", DATA)
    files = gv.export(run, tmp_path / "files")
    viewer = gv.start(files, log=tmp_path / "me.log")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--use-gl=swiftshader",
                                                                         "--enable-unsafe-swiftshader"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(viewer.url)
            page.get_by_text("exec_ms.json").first.wait_for(timeout=60_000)
            page.get_by_text("Node data").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "model_explorer.png"))
            body = page.inner_text("body")
            browser.close()
    finally:
        viewer.stop()
    assert f"bert-tiny · {run.id} (torch.export)" in body and "Unsupported JSON format" not in body
    assert "94 nodes" in body and "layer count" in body
    assert "gflop.json" in body and "trans_ms.json" in body
    embedding = next(n for n in run.graph.nodes if n.op == "aten::embedding" and n.exec_ms > 1)
    assert f"{embedding.exec_ms:.4g}" in body  # a node's own time, as the overlay table lists it
