"""The Runs page compares two imported GPU runs below the operator level, and offers the HTML report."""
from pathlib import Path

from streamlit.testing.v1 import AppTest
from testdata import DATA

from profiler import store
from profiler.traces.importer import import_trace

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def test_runs_page_diffs_kernels_transfers_and_gpu(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    h100 = import_trace(DATA / "h100_bert_small.pt.trace.json.gz")
    mi300 = import_trace(DATA / "mi300_bert_small.pt.trace.json.gz")
    store.save(h100, root)
    store.save(mi300, root)
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("app_pages/runs.py")
    at.run()
    at.selectbox(key="cmp_base").set_value(h100.id)
    at.selectbox(key="cmp_new").set_value(mi300.id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    text = " ".join(m.value for m in at.markdown)
    for part in ("Kernels by operator", "Transfers", "GPU timeline"):
        assert part in text
    kernel_tables = [df.value for df in at.dataframe if "kernel" in df.value.columns]
    assert kernel_tables and "aten::addmm" in set(kernel_tables[0]["operator"])
