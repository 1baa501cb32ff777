"""Every page works on an imported trace (a GPU one with a module tree, and a CPU-only one), as on a live run."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from testdata import DATA

from profiler import store
from profiler.analysis import frames as analysis
from profiler.traces.importer import import_trace
from tests.dashboard.test_pages import SHOWS, open_page, texts

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ["overview", "operators", "graph", "timeline", "why_slow", "runs"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("trace-runs")
    runs = {name: import_trace(DATA / f"{name}.pt.trace.json.gz")
            for name in ("h100_bert_small", "mi300_bert_small", "cpu_only")}
    runs["ddp"] = import_trace([DATA / "ddp_rank0.pt.trace.json.gz", DATA / "ddp_rank1.pt.trace.json.gz"])
    for run in runs.values():
        store.save(run, root)
    return runs, root


@pytest.mark.parametrize("name", ["h100_bert_small", "cpu_only"])
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_an_imported_run(page, name, imported, monkeypatch, cached_peaks):
    runs, root = imported
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["run_id"] = runs[name].id
    at.run()
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if page == "timeline" and name == "h100_bert_small":
        assert any("GPU time per step" in s.value for s in at.subheader)
    assert SHOWS[page](at, runs[name]), texts(at)
    if page == "overview" and name == "cpu_only":
        setup = at.table[-1].value
        assert "not in the trace" in setup.loc[setup[""] == "parameters", "value"].iloc[0]


def test_timeline_shows_the_ranks_of_a_cpu_job(imported, monkeypatch):
    runs, root = imported
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["run_id"] = runs["ddp"].id
    at.run()
    at.switch_page("app_pages/timeline.py")
    at.run()
    assert not at.exception and any(s.value == "Ranks (2)" for s in at.subheader)
    ranks = at.dataframe[0].value
    assert list(ranks["rank"]) == [0, 1] and list(ranks["straggler"]) == [False, True]


def test_runs_diff_of_two_imported_traces(imported):
    runs, _ = imported
    c = analysis.compare(runs["h100_bert_small"], runs["mi300_bert_small"])
    assert c.ops and any(d.name == "aten::addmm" for d in c.ops)
    assert not c.same_setup  # different GPUs: the diff says so


def test_an_uploaded_trace_may_be_imported(tmp_path, monkeypatch):
    """What the Timeline page's "Import as a run" does: the import job (the server's boundary) reads the upload folder,
    an allowed directory, and refuses a file elsewhere in one line; import_trace itself reads what it is handed."""
    import threading

    from dashboard import state
    from profiler import store
    from profiler.jobs.worker import import_job
    from profiler.policy import PolicyError

    class Upload:
        name = "h100_bert_small.pt.trace.json.gz"

        def getbuffer(self):
            return memoryview((DATA / self.name).read_bytes())

    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path / "runs"))
    say = lambda stage, f: None  # noqa: E731
    run_id = import_job({"paths": [str(state.save_upload(Upload()))]}, say, threading.Event())
    run = store.load(run_id)
    assert run.model.source == "trace" and run.gpu.steps == 1
    elsewhere = tmp_path / "elsewhere" / Upload.name
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(Upload().getbuffer())
    with pytest.raises(PolicyError, match="this server reads traces only from"):
        import_job({"paths": [str(elsewhere)]}, say, threading.Event())
    assert import_trace(elsewhere).gpu.steps == 1  # from Python, a user's own file is read as handed


def why_slow_of(name: str, root, monkeypatch):
    """A shared trace imported into `root` and its Why slow page opened (open_page checks for exceptions)."""
    run = import_trace(DATA / f"{name}.pt.trace.json.gz")
    store.save(run, root)
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    return run, open_page("why_slow", run.id)


def test_why_slow_on_a_gpu_trace_shows_its_work_per_shape_and_gpu_rules(imported, monkeypatch):
    runs, root = imported
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    at = open_page("why_slow", runs["h100_bert_small"].id)
    assert not at.error
    shapes = next(d.value for d in at.dataframe if "us per call (median)" in d.value.columns)
    top = shapes.iloc[0]
    assert top["operator"] == "aten::addmm" and top["shape"] == "M=141 N=512 K=512 bias" and top["calls"] == 17
    assert any("explain 100% of the compute kernel time" in c.value for c in at.caption)
    assert "The GPU waits for the host" in texts(at)


def test_why_slow_on_a_trace_of_an_unknown_gpu_asks_for_measured_peaks(tmp_path, monkeypatch):
    _, at = why_slow_of("sampled_rank0_gpu", tmp_path, monkeypatch)  # no deviceProperties: the GPU is unnamed
    assert not at.error
    assert any("No published peaks" in i.value for i in at.info)
    assert not any(b.label == "Measure this machine's peaks" for b in at.button)  # this machine is not that GPU


def test_why_slow_on_a_multi_step_training_trace_floors_it_against_its_wall_time(tmp_path, monkeypatch):
    """The 2021 ResNet-50 training trace (6 steps, totals): the page's first figure is the trace's wall time, the
    floor below it, the convolutions on the V100's roof."""
    run, at = why_slow_of("resnet50_train_gpu", tmp_path, monkeypatch)
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trace wall time"] == f"{run.totals.wall_ms:.3g} ms" and "Measured median" not in metrics
    assert float(metrics["Floor at peak"].split()[0]) < run.totals.wall_ms
    roof = next(d.value for d in at.dataframe if "% of roof" in d.value.columns)
    assert roof[roof["operator"] == "aten::cudnn_convolution_backward_weight"].iloc[0]["bound"] == "compute"
