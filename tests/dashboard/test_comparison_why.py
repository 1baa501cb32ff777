"""The Runs page shows a saved comparison with why it helped or hurt (profiler.analysis.explain), from a real one."""
import shutil

from tests.dashboard.test_pages import open_page
from tests.profiler.analysis.test_explain import DATA


def test_runs_page_shows_why_the_saved_comparison_helped(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(DATA, root)
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    at = open_page("runs")
    assert [e.value for e in at.error] == ["Outputs are outside the tolerance: outside tolerance (cosine >= 0.999, "
                                           "top-1 agreement >= 99%). Do not ship this without checking accuracy."]
    assert any(s.value == "Why it helped or hurt" for s in at.subheader)
    assert any(m.value.startswith("**Helped: 236 ms -> 130 ms median per inference (1.81x)") for m in at.markdown)
    table = at.dataframe[-1].value
    # causes on each run's median basis, the largest first (here the busy base run's copies, then the int8 kernels)
    assert list(table["effect (ms)"].abs()) == sorted(table["effect (ms)"].abs(), reverse=True)
    kernels = table[table["kind"] == "kernels"]
    assert len(kernels) == 1 and kernels["cause"].iloc[0].startswith("Linear/matmul kernels changed")
