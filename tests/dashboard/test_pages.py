"""Every page renders without an exception on an empty store and on a saved run; key numbers match the run's JSON."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from profiler.timing import significant

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ["profile", "overview", "operators", "graph", "timeline", "bottlenecks", "runs", "system", "optimize"]


def open_page(page: str, run_id: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    if run_id:
        at.session_state["run_id"] = run_id
    at.run()
    if page != "profile":
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def saved(tiny_bert_run, monkeypatch):
    run, root = tiny_bert_run
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    return run


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [s.value for s in at.success]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_empty_store(page):
    at = open_page(page)
    if page not in ("profile", "system", "optimize"):
        assert "No saved runs yet" in texts(at)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_a_saved_run(page, saved):
    at = open_page(page, saved.id)
    assert not at.error, [e.value for e in at.error]


def test_overview_numbers_match_the_run(saved):
    at = open_page("overview", saved.id)
    metrics = {m.label: m.value for m in at.metric}
    lat = saved.latency
    assert metrics["Median latency"] == f"{significant(lat.median_ms, lat.iqr_ms)} ms"
    assert metrics["Coverage"] == f"{100 * saved.totals.coverage:.1f}%"
    assert metrics["Throughput"] == f"{1000 * saved.config.batch_size / lat.median_ms:,.1f} /s"


def test_operators_table_matches_and_filters(saved):
    at = open_page("operators", saved.id)
    df = at.dataframe[0].value
    assert list(df["name"]) == [o.name for o in saved.ops]
    assert df["exec_ms"].sum() == pytest.approx(saved.totals.exec_ms)
    at.text_input(key="op_name").input("addmm").run()
    df = at.dataframe[0].value
    assert set(df["name"]) == {o.name for o in saved.ops if "addmm" in o.name}


def test_graph_page_shows_node_details(saved):
    at = open_page("graph", saved.id)
    assert f"{len(saved.graph.nodes)} nodes" in texts(at)
    slowest = max(saved.graph.nodes, key=lambda n: n.exec_ms + n.trans_ms)
    at.select_slider(key="graph_depth").set_value("every node").run()
    assert at.selectbox(key="graph_pick").value == slowest.id
    assert {m.label: m.value for m in at.metric}["T_exec"] == f"{slowest.exec_ms:.4g} ms"


def test_bottlenecks_are_listed(saved):
    at = open_page("bottlenecks", saved.id)
    assert "Usually fixed by" in texts(at)


def test_runs_page_rename_and_compare(saved, tmp_path, monkeypatch):
    import profiler
    from profiler import store

    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path / "r"))
    store.save(saved, tmp_path / "r")
    other = profiler.profile(profiler.load_model("bert-tiny"),
                             profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0, profile_iters=1, graph=False))
    store.save(other, tmp_path / "r")
    at = open_page("runs")
    at.selectbox(key="manage_run").set_value(saved.id).run()
    at.text_input(key="new_label").input("baseline").run()
    at.button(key="rename").click().run()
    assert store.load(saved.id, tmp_path / "r").label == "baseline"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Speedup (base / new median)"].endswith("x")
    # delete needs the confirmation first
    assert at.button(key="delete").disabled
    at.checkbox(key="confirm_delete").check().run()
    at.selectbox(key="manage_run").set_value(other.id).run()
    at.button(key="delete").click().run()
    assert [r.id for r in store.list_runs(tmp_path / "r")] == [saved.id]


def test_profile_page_rejects_empty_path():
    at = open_page("profile")
    at.radio(key="source").set_value("Path on this server").run()
    at.button[0].click().run()  # the form's submit button
    assert any("Choose a model first" in e.value for e in at.error)


def test_timeline_trace_file_mode_renders():
    at = open_page("timeline")
    at.radio(key="tl_source").set_value("A trace file").run()
    assert not at.exception and not at.error  # the upload itself is driven in the browser test


@pytest.mark.parametrize("path, message", [("missing_model.py:build", "model file not found"),
                                           ("README.md", "not a model file")])
def test_profile_page_bad_input_shows_the_reason_and_keeps_runs(path, message, saved):
    import time

    at = open_page("profile")
    at.radio(key="source").set_value("Path on this server").run()
    at.text_input(key="path").input(path).run()
    at.button[0].click().run()
    job = at.session_state["job_id"]
    from dashboard.state import job_manager

    deadline = time.time() + 60
    while job_manager().get(job).active and time.time() < deadline:
        time.sleep(0.2)
    at.run()
    errors = [e.value for e in at.error]
    assert any("Profiling failed" in e and message in e for e in errors), errors
    assert not at.exception
    from profiler import store

    assert [r.id for r in store.list_runs()] == [saved.id]  # the saved run is still there


def _wait_job(at, key):
    import time

    from dashboard.state import job_manager

    job = job_manager().get(at.session_state[key])
    deadline = time.time() + 120
    while job.active and time.time() < deadline:
        time.sleep(0.2)
    at.run()
    return job


def test_optimize_page_applies_a_pass_and_shows_the_proof():
    at = open_page("optimize")
    at.selectbox(key="opt_model").set_value("cnn-tiny").run()
    at.multiselect(key="opt_passes").set_value(["conv-bn-fold", "channels-last"]).run()
    at.button(key="opt_go").click().run()
    job = _wait_job(at, "opt_job")
    assert job.status == "done", job.error
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    comp = job.result["comparison"]
    assert metrics["Speedup"] == f"{comp['speedup']:.2f}x"
    assert metrics["Accuracy"] == "PASS"
    assert len(job.result["waterfall"]) == 3  # base, after the first pass, after both


def test_optimize_page_refuses_conflicting_passes():
    at = open_page("optimize")
    at.multiselect(key="opt_passes").set_value(["bf16", "autocast"]).run()
    assert any("Cannot combine" in e.value for e in at.error)
    assert at.button(key="opt_go").disabled


def test_search_results_render():
    import profiler
    from dashboard.jobs import Job
    from dashboard.state import job_manager
    from optimizers.search import search

    result = search(profiler.load_model("mlp-tiny"), profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0),
                    budget_s=20, passes=["magnitude-prune", "dynamic-int8"]).to_dict()
    assert result["vs_best_single"] is None  # one-pass winner: nothing to compare it with
    # as a two-pass winner's search reports it (the figures are the page's input, not a measurement)
    result["vs_best_single"] = {"passes": ["static-int8", "torch-compile"], "single": ["dynamic-int8"],
                                "speedup": 1.31, "speedup_low": 1.27, "speedup_high": 1.35, "rounds": 2}
    job = Job(id="search-test", kind="search", spec="mlp-tiny", payload={}, status="done", result=result)
    job_manager()._jobs[job.id] = job
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["search_job"] = job.id
    at.run()
    at.switch_page("app_pages/optimize.py").run()
    assert not at.exception
    assert any("Stopped:" in c.value for c in at.caption)
    assert any("static-int8 + torch-compile is 1.31x the speed of the best single pass, dynamic-int8" in c.value
               for c in at.caption)
    board = at.dataframe[-1].value
    assert set(board["status"]) >= {"inaccurate"}


def test_overview_shows_flop_coverage_beside_achieved_flops(saved):
    from profiler import analysis

    at = open_page("overview", saved.id)
    rate = analysis.flop_rate(saved)
    assert {m.label: m.value for m in at.metric}["Achieved FLOP/s"] == f"{rate.gflops_per_s:,.1f} G"
    assert rate.coverage_text() in texts(at)
