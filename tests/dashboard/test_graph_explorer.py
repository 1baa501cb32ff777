"""The Graph page opens the run in Model Explorer: the button starts it on loopback and the page links to it."""
import urllib.request

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.test_pages import APP


def test_graph_page_starts_model_explorer_and_links_it(tiny_bert_run, monkeypatch, tmp_path):
    """On a machine whose peaks were never measured (issue 21: the button spun ~5 minutes measuring them inside the
    server), opening the viewer measures nothing; stopping it removes its files."""
    pytest.importorskip("model_explorer")
    from dashboard import state
    from profiler.measure import peaks as peaks_mod

    def never(*args, **kwargs):
        raise AssertionError("opening a viewer measured the machine")

    monkeypatch.setattr(peaks_mod, "measure", never)
    monkeypatch.setattr(peaks_mod, "_shape_gemm", never)
    monkeypatch.setenv("OPLENS_CACHE_DIR", str(tmp_path / "empty-cache"))
    run, root = tiny_bert_run
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["run_id"] = run.id
    at.run()
    at.switch_page("app_pages/graph.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="model_explorer").click()
    at.run()
    try:
        assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
        viewer = state.model_explorer(run)
        assert viewer is not None
        link = next(m.value for m in at.markdown if "Model Explorer is serving this run" in m.value)
        assert f"]({viewer.url})" in link and viewer.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"http://127.0.0.1:{viewer.port}/check_health", timeout=10) as r:
            assert r.read() == b"model_explorer_ok"
    finally:
        viewer = state.model_explorer(run)
        if viewer is not None:
            viewer.stop()
    assert viewer.owned_dir is not None and not viewer.owned_dir.exists()  # its export folder went with it
