"""Every page renders without an exception on an empty store and on a saved run; key numbers match the run's JSON."""
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from profiler.stats import significant

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = [
    "profile",
    "overview",
    "operators",
    "graph",
    "timeline",
    "runs",
    "system",
    "optimize",
    "why_slow",
    "generate",
    "train",
    "queue",
]


def open_page(page: str, run_id: str | None = None, timeout: float = 30) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    if run_id:
        at.session_state["run_id"] = run_id
    at.run()
    if page != "profile":
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def saved(tiny_bert_run, monkeypatch, cached_peaks):
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
    if page == "queue":
        assert "Nothing is waiting or running" in texts(at)
    elif page not in ("profile", "system", "optimize"):
        assert "No saved runs yet" in texts(at)


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _timeline_shows(at: AppTest, run) -> bool:
    """A GPU import: its per-step windows; otherwise the trace's event count per category, as the trace reader
    counts them."""
    from profiler.traces.read import read_trace, summary

    if run.gpu is not None:
        steps = at.dataframe[0].value
        return list(steps["window ms"]) == run.gpu.step_window_ms
    counts = {c: v["count"] for c, v in summary(read_trace(run.trace_path))["categories"].items()}
    table = at.dataframe[-1].value
    return dict(zip(table["category"], table["events"])) == counts


def _why_slow_shows(at: AppTest, run) -> bool:
    """The median, and the findings of the one engine, in its order (the recommendations are checked in
    test_why_slow)."""
    from optimizers import recommend as advice

    titles = [m.value for m in at.markdown if re.match(r"\*\*\d+\. ", m.value)]
    found = [f"**{i}. {f.title}**" for i, f in enumerate(advice.why_slow(run, measure_peaks=False).findings, 1)]
    if run.model.source == "trace":  # op figures are totals over the trace: so is the measured time beside the floor
        first = _metrics(at)["Trace wall time"] == f"{run.totals.wall_ms:.3g} ms"
    else:
        first = _metrics(at)["Measured median"] == f"{run.latency.median_ms:.3g} ms"
    return first and titles[:len(found)] == found


def _graph_shows(at: AppTest, run) -> bool:
    return (f"{len(run.graph.nodes)} nodes" if run.graph.nodes else "This run has no graph") in texts(at)


# what each page must show for the run it is given: a figure or a name it could get wrong, not only "no error"
SHOWS = {
    "profile": lambda at, run: at.selectbox(key="sample").value == "bert-tiny",
    "overview": lambda at, run: _metrics(at)["Coverage"] == f"{100 * run.totals.coverage:.1f}%",
    "operators": lambda at, run: list(at.dataframe[0].value["operator"]) == [o.name for o in run.ops],
    "graph": _graph_shows,
    "timeline": _timeline_shows,
    "runs": lambda at, run: run.id in list(at.dataframe[0].value["id"]),
    "system": lambda at, run: [m.label for m in at.metric][:3] == ["CPU", "Memory", "Load (1 min)"],
    "optimize": lambda at, run: at.selectbox(key="opt_sample").value == "bert-tiny"
    and "A saved run" in at.radio(key="opt_source").options,
    "why_slow": _why_slow_shows,
    "generate": lambda at, run: any("The selected run is not a generation" in i.value for i in at.info),
    "train": lambda at, run: any("The selected run is not a training run" in i.value for i in at.info),
    # the Queue page (on main, not yet on this branch) is about jobs, not runs: it shows its history section
    "queue": lambda at, run: "Your recent jobs" in [s.value for s in at.subheader],
}


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_a_saved_run(page, saved):
    at = open_page(page, saved.id)
    assert not at.error, [e.value for e in at.error]
    assert SHOWS[page](at, saved), texts(at)


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
    assert list(df["operator"]) == [o.name for o in saved.ops]
    # readable headers with units; values on the median's basis, rounded to the noise, so they sum to T_exec scaled
    # to the median within a few per cent
    from profiler.analysis import basis
    assert df["exec (ms)"].sum() == pytest.approx(basis.basis(saved).ops(saved.totals.exec_ms), rel=0.05)
    assert "device (ms)" not in df.columns and "device_ms" not in df.columns  # a CPU run has no device time
    assert "GFLOP" in df.columns and "allocated (MiB)" in df.columns
    assert not any("_" in c for c in df.columns), list(df.columns)
    at.text_input(key="op_name").input("addmm").run()
    df = at.dataframe[0].value
    assert set(df["operator"]) == {o.name for o in saved.ops if "addmm" in o.name}


def test_graph_page_shows_node_details(saved):
    at = open_page("graph", saved.id)
    assert f"{len(saved.graph.nodes)} nodes" in texts(at)
    slowest = max(saved.graph.nodes, key=lambda n: n.exec_ms + n.trans_ms)
    at.select_slider(key="graph_depth").set_value("every node").run()
    assert at.selectbox(key="graph_pick").value == slowest.id
    from profiler.analysis import basis
    assert {m.label: m.value for m in at.metric}["T_exec"] == f"{basis.basis(saved).nodes(slowest.exec_ms):.3g} ms"


def test_one_run_tells_one_story_on_every_page(saved):
    """Issue 21: a bert-tiny run's pages said 16 ms (median), 68.3 ms (profiled inference), 65.08 ms (Operators),
    Σ 193 ms (Graph), headroom 64.5 ms (Why slow). Now every time is a part of the median, or its line says why not:
    the Overview's parts, the Operators total, the Graph's node times and the Why-slow headroom all fit in it."""
    from profiler.analysis import basis

    b, median = basis.basis(saved), saved.latency.median_ms
    line = b.per_inference_line()
    if saved.totals.wall_ms > 1.05 * median:  # a profiled tiny model is slower than its median: the scaling is said
        assert f"{median:.3g} ms median" in line and f"{b.overhead:.2f}x" in line
    overview = open_page("overview", saved.id)
    assert line in texts(overview)
    unexplained = float(_metrics(overview)["Coverage"] and [m.delta for m in overview.metric
                                                            if m.label == "Coverage"][0].split(" ms")[0])
    assert 0 <= unexplained <= median
    ops = open_page("operators", saved.id)
    total = ops.dataframe[0].value["total (ms)"].sum()
    assert total <= median * 1.02 and f"of the {median:.3g} ms median" in texts(ops)
    assert total == pytest.approx(median * saved.totals.coverage, rel=0.05)
    graph = open_page("graph", saved.id)
    assert b.graph_line() in texts(graph)
    graph.select_slider(key="graph_depth").set_value("every node").run()
    assert float(_metrics(graph)["T_exec"].split()[0]) <= median
    why = open_page("why_slow", saved.id)
    assert float(_metrics(why)["Headroom"].split()[0]) <= median
    assert line in texts(why)


def test_findings_are_listed(saved):
    at = open_page("why_slow", saved.id)
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
    # the saved-run picker gives way to the uploader
    [uploader] = at.get("file_uploader")
    assert uploader.proto.label == "PyTorch profiler trace (several files = the ranks of one job)"
    assert not at.selectbox


DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("path, message", [(str(DATA / "missing_model.pt"), "model file not found"),
                                           (str(DATA / "README.md"), "not a model file")])
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


def _checked(at):
    """Wait for the worker job that checks which passes apply, then rerun the page with its table."""
    job = _wait_job(at, "opt_check_job")
    assert job.kind == "check" and job.status == "done", job.error
    return job


def test_optimize_page_applies_a_pass_and_shows_the_proof():
    at = open_page("optimize")
    at.selectbox(key="opt_sample").set_value("cnn-tiny").run()
    _checked(at)
    at.multiselect(key="opt_passes").set_value(["conv-bn-fold", "channels-last"]).run()
    at.button(key="opt_go").click().run()
    job = _wait_job(at, "opt_job")
    assert job.status == "done", job.error
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    comp = job.result["apply"]["comparison"]
    assert metrics["Speedup"] == f"{comp['speedup']:.2f}x"
    assert metrics["Accuracy"] == "PASS"
    assert len(job.result["waterfall"]) == 3  # base, after the first pass, after both
    from profiler import store

    # kept in the run store, with both runs, for the Runs page and `python -m optimizers results`
    [saved] = store.list_comparisons()
    assert saved.id == job.result["id"] and saved.passes == ["conv-bn-fold", "channels-last"]
    assert {saved.base_run_id, saved.optimized_run_id} == {r.id for r in store.list_runs()}


@pytest.mark.slow  # ~9 s; conflicts are tested in process (test_onnx_runtimes, test_passes)
def test_optimize_page_refuses_conflicting_passes():
    at = open_page("optimize")
    _checked(at)
    at.multiselect(key="opt_passes").set_value(["bf16", "autocast"]).run()
    assert any("Cannot combine" in e.value for e in at.error)
    assert at.button(key="opt_go").disabled


def test_search_results_render():
    import profiler
    from dashboard.state import job_manager
    from optimizers import results
    from optimizers.search import search
    from profiler.jobs import Job
    from profiler.schema import HeadToHead

    loaded, config = profiler.load_model("mlp-tiny"), profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0)
    found = search(loaded, config, budget_s=20, passes=["magnitude-prune", "dynamic-int8"])
    assert found.vs_best_single is None  # one-pass winner: nothing to compare it with
    # as a two-pass winner's search reports it (the figures are the page's input, not a measurement)
    found.vs_best_single = HeadToHead(passes=["static-int8", "torch-compile"], single=["dynamic-int8"], speedup=1.31,
                                      speedup_low=1.27, speedup_high=1.35, rounds=2)
    result = results.from_search(found, loaded, config).to_dict()
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


def test_overview_shows_the_runs_warnings(saved, tmp_path, monkeypatch):
    import dataclasses

    from profiler import store

    flagged = dataclasses.replace(saved, id=saved.id + "-flagged", trace_path=None,
                                  warnings=["input input_ids has shape [2, 0]: a zero-size dimension"])
    store.save(flagged, tmp_path / "r")
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path / "r"))
    at = open_page("overview", flagged.id)
    assert any("Suspect measurement" in w.value and "[2, 0]" in w.value for w in at.warning)


def test_profile_page_zero_sizes_keep_the_factorys_defaults(tmp_path, monkeypatch):
    import time

    from dashboard.state import job_manager
    from profiler import store

    f = tmp_path / "user_model.py"
    f.write_text("import torch\ndef build(batch_size=6, seq_len=9):\n"
                 "    return torch.nn.Embedding(20, 4), torch.randint(0, 20, (batch_size, seq_len))\n")
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("OPLENS_ALLOW_CODE", "1")  # a .py model: only on a server started to allow code
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(tmp_path))
    at = open_page("profile")
    at.radio(key="source").set_value("Path on this server").run()
    at.text_input(key="path").input(f"{f}:build").run()
    assert [n.value for n in at.number_input][:2] == [0, 0]  # batch and length: 0 = the model's default
    at.button[0].click().run()
    job = at.session_state["job_id"]
    deadline = time.time() + 120
    while job_manager().get(job).active and time.time() < deadline:
        time.sleep(0.2)
    run = store.load(job_manager().get(job).run_id)
    assert (run.config.batch_size, run.config.seq_len) == (6, 9)
@pytest.fixture
def own_store(saved, tmp_path, monkeypatch):
    """The saved run in a runs dir of this test's own, for tests that add to the store."""
    from profiler import store

    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path / "own"))
    store.save(saved, tmp_path / "own")
    return saved


def _seed_comparison(run, **headline):
    """A saved apply between two saved runs, with the figures given (the page's input, not a measurement)."""
    from profiler import store
    from profiler.schema import Accuracy, Comparison, OptimizeResult, PassResult, ProfileConfig, SavedComparison

    acc = Accuracy(max_abs_err=1e-3, rel_err=1e-4, cosine=0.99999, top1_agreement=1.0, passed=True, kind="logits")
    comp = Comparison(base_id=run.id, new_id=run.id, speedup=headline["speedup"], speedup_low=headline["low"],
                      speedup_high=headline["high"], base_median_ms=1.0, new_median_ms=1 / headline["speedup"],
                      same_setup=True)
    result = OptimizeResult(passes=[PassResult(name="bf16", applied=True, apply_s=0.01)], base_run_id=run.id,
                            optimized_run_id=run.id, comparison=comp, accuracy=acc)
    saved = SavedComparison(id="20261125-120000-apply-bert-tiny-abc123", created="2026-11-25T12:00:00+00:00",
                            kind="apply", model="bert-tiny", spec="bert-tiny", config=ProfileConfig(), passes=["bf16"],
                            base_run_id=run.id, optimized_run_id=run.id, speedup=headline["speedup"],
                            speedup_low=headline["low"], speedup_high=headline["high"], accuracy=acc, apply=result)
    store.save_comparison(saved)
    return saved


def test_runs_page_shows_a_saved_comparison_again(own_store):
    seeded = _seed_comparison(own_store, speedup=1.37, low=1.21, high=1.52)
    at = open_page("runs")
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[-2].value  # the comparisons table, above the shown comparison's pass table
    assert list(table["id"]) == [seeded.id] and list(table["speedup"]) == ["1.37x (1.21-1.52)"]
    metrics = {m.label: m for m in at.metric}
    assert metrics["Speedup"].value == "1.37x" and "range 1.21-1.52x" in metrics["Speedup"].delta
    assert metrics["Accuracy"].value == "PASS"
    assert any(seeded.id in c.value for c in at.caption)


def test_optimize_page_offers_every_source_and_checks_passes_in_a_worker(monkeypatch):
    from optimizers import base, tables
    from profiler import devices

    def in_the_server(self, loaded, device):
        raise AssertionError(f"{self.name}.check ran in the server process")

    monkeypatch.setattr(base.Pass, "check", in_the_server)  # the worker process is not patched
    at = open_page("optimize")
    assert at.radio(key="opt_source").options == ["Sample model", "Upload a file", "Path on this server",
                                                  "Hugging Face Hub id", "A saved run"]
    job = _checked(at)
    assert job.spec == "bert-tiny"
    assert not at.exception, [e.value for e in at.exception]
    offered = at.multiselect(key="opt_passes").options  # as shown: a pass this CPU emulates is marked so
    labels = tables.pass_label(job.result)
    assert offered == [labels[row["pass"]] for row in job.result if row["applies"]]
    assert ("bf16 (emulated here: expect a slowdown)" if "bf16" in devices.emulated_precisions() else "bf16") in offered
    # every pass that does not apply, with its reason in full (a table cell cut "why not" at its width)
    listed = "\n".join(m.value for m in at.markdown)
    for row in job.result:
        if not row["applies"]:
            assert f"- **{row['pass']}**: {row['why not']}" in listed


def test_optimize_page_takes_a_saved_runs_model_and_config(saved):
    from dashboard.state import job_manager

    at = open_page("optimize", saved.id)
    at.radio(key="opt_source").set_value("A saved run").run()
    assert not at.error, [e.value for e in at.error]
    assert any("Same config as that run" in c.value for c in at.caption)
    job = job_manager().get(at.session_state["opt_check_job"])
    assert job.spec == saved.model.spec and job.payload["source_run_id"] == saved.id
    assert job.payload["config"] == saved.config.to_dict()


def test_optimize_page_says_when_a_saved_runs_model_is_gone(own_store):
    import copy

    from profiler import store

    gone = copy.deepcopy(own_store)
    gone.id, gone.trace_path = "20261125-120000-uploaded-abc123", None
    gone.model.source, gone.model.spec = "file", "/tmp/oplens-uploads/0000/deleted_model.py:build_model"
    store.save(gone)
    at = open_page("optimize", gone.id)
    at.radio(key="opt_source").set_value("A saved run").run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert "deleted_model.py is gone" in error and "\n" not in error
    from dashboard.state import job_manager

    # the first render checked the sample model; nothing was launched for the run whose model is gone
    assert job_manager().get(at.session_state["opt_check_job"]).payload["source_run_id"] == ""


@pytest.mark.slow  # ~10 s; bad paths on the pages are covered by tests/bad_inputs
def test_optimize_page_bad_path_is_one_line_from_the_worker():
    at = open_page("optimize")
    at.radio(key="opt_source").set_value("Path on this server").run()
    at.text_input(key="opt_path").input(str(DATA / "missing_model.pt")).run()
    job = _wait_job(at, "opt_check_job")
    assert job.kind == "check" and job.status == "failed"
    assert not at.exception
    assert [e.value for e in at.error] == [f"Cannot optimize this model: model file not found: {DATA}/missing_model.pt"]


def test_overview_shows_flop_coverage_beside_achieved_flops(saved):
    from profiler.analysis import frames as analysis

    at = open_page("overview", saved.id)
    rate = analysis.flop_rate(saved)
    assert {m.label: m.value for m in at.metric}["Achieved FLOP/s"] == f"{rate.gflops_per_s:,.1f} G"
    assert rate.coverage_text() in texts(at)


def test_runs_page_shows_a_saved_generation_again(own_store):
    """An optimized generation is kept like an apply: the Runs page lists it and shows its result table again."""
    from optimizers import results
    from profiler.schema import GenerateConfig, GenerationResult, GenerationSide, PassResult, Ratio, Spread

    side = GenerationSide(tpot_ms=Spread(median=50.0), ttft_ms=Spread(median=500.0))
    found = GenerationResult(model="llama-tiny", passes=[PassResult(name="bf16", applied=True, apply_s=0.4)],
                             base=side, optimized=GenerationSide(tpot_ms=Spread(median=25.0)),
                             tpot_speedup=Ratio(median=2.0, p10=1.8, p90=2.2, rounds=3), token_agreement=0.97,
                             forced_agreement=1.0, prefill_cosine=0.9999, accurate=True,
                             base_text=" the river rises in the hills", optimized_text=" the river rises in the north")

    class Loaded:
        info = type("Info", (), {"name": "llama-tiny", "spec": "llama-tiny"})()

    saved = results.keep(results.from_generation([found], Loaded(), GenerateConfig(prompt_len=16)))
    at = open_page("runs")
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert list(table["kind"]) == ["generate"] and list(table["speedup"]) == ["2.00x (1.80-2.20)"]
    result = next(d.value for d in at.dataframe if "pipeline" in d.value.columns)  # a table, not clipped text
    assert list(result["pipeline"]) == ["bf16"] and list(result["TPOT x (range)"]) == ["2.00 (1.80-2.20)"]
    shown = [c.value for c in at.code]
    assert "the river rises in the hills" in shown and "the river rises in the north" in shown
    assert any(c.value == "Optimized (bf16) wrote" for c in at.caption)
    assert any(saved.id in c.value for c in at.caption)


def test_a_noise_warning_shows_once_on_overview(saved, tmp_path, monkeypatch):
    """Issue 21: the same warning was shown twice on Overview (as a warning and again as the run's note)."""
    import copy

    from profiler import store
    from profiler.stats import noise_message

    noisy = copy.deepcopy(saved)
    noisy.id, noisy.latency.noise, noisy.latency.iqr_ms = "noisy-run", "noisy", 0.2 * noisy.latency.median_ms
    message = noise_message(noisy.latency)
    assert message
    noisy.notes = [message, "another note"]
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path / "noisy"))
    store.save(noisy, tmp_path / "noisy")
    at = open_page("overview", noisy.id)
    shown = [w.value for w in at.warning] + [i.value for i in at.info]
    assert shown.count(message) == 1 and "another note" in shown


def test_a_generation_comparison_does_not_show_empty_run_ids():
    """Issue 21: the headline read "runs `-` → `-`" for an optimized generation, which saves no runs."""
    from dashboard.comparison_view import _headline
    from profiler.schema import ProfileConfig, SavedComparison

    line = _headline(SavedComparison(id="c1", created="", kind="generate", model="llama-tiny", spec="llama-tiny",
                                     config=ProfileConfig(), passes=["sdpa"], speedup=1.1, speedup_low=1.0,
                                     speedup_high=1.2))
    assert "`-`" not in line and "no runs saved" in line
