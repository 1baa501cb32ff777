"""Each Learn lesson clicked through in AppTest on a participant's own runs: the picker offers only hers, the question's
right answer (computed by dashboard.lessons from her numbers) is accepted and a wrong one corrected; the buttons start
real jobs."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import lessons
from profiler import store

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def open_lesson(page: str, name: str = "ann") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["name"] = name
    at.run()
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def answer(at: AppTest, key: str, choice: str) -> None:
    at.radio(key=f"{key}_answer").set_value(choice).run()
    at.button(key=f"{key}_check").click().run()
    assert not at.exception, [e.value for e in at.exception]


def check_both_answers(at: AppTest, key: str, q: lessons.Question) -> None:
    """The right answer is praised with the explanation; a wrong one names the right answer."""
    assert at.radio(key=f"{key}_answer").options == q.options
    answer(at, key, q.correct)
    assert any(s.value.startswith("Right.") and q.explanation in s.value for s in at.success), \
        [s.value for s in at.success]
    wrong = next(o for o in q.options if o != q.correct)
    answer(at, key, wrong)
    assert any(f"the answer is **{q.correct}**" in e.value for e in at.error), [e.value for e in at.error]


def wait(job_id: str, seconds: float = 180):
    from dashboard.state import job_manager

    job = job_manager().get(job_id)
    deadline = time.time() + seconds
    while job.active and time.time() < deadline:
        time.sleep(0.3)
    return job


def own_runs(root, who="ann"):
    return [r for r in store.list_runs(root) if r.participant == who]


def test_lesson_1_where_the_time_goes(in_classroom):
    root, runs = in_classroom
    at = open_lesson("learn_time")
    picker = at.selectbox(key="l1_pick")
    assert len(picker.options) == len(own_runs(root)) == 2  # ann's two runs, not bob's
    run = store.load(picker.value, root)
    assert run.participant == "ann"
    check_both_answers(at, "l1", lessons.where_time_goes(run))


def test_lesson_1_profiles_bert_tiny_from_the_page():
    at = open_lesson("learn_time", name="dan")
    assert any("No saved runs yet" in i.value for i in at.info)
    at.button(key="l1_profile").click().run()
    job = wait(at.session_state["l1_job"]["jobs"][0])
    assert job.status == "done", job.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="l1_pick").value == job.run_id  # the new run is this session's current one
    assert store.load(job.run_id).model.name == lessons.LESSON_MODEL
    assert len(at.radio(key="l1_answer").options) >= 2


def test_lesson_2_compute_vs_data_movement(in_classroom):
    root, _ = in_classroom
    at = open_lesson("learn_movement")
    run = store.load(at.selectbox(key="l2_pick").value, root)
    check_both_answers(at, "l2", lessons.compute_vs_movement(run))
    # no GPU here: the imported H200 trace stands in, its share computed by the same function
    from dashboard.lesson_view import GPU_EXAMPLE
    from profiler.traces.importer import import_trace

    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Data movement share on the GPU"] == f"{lessons.movement_share(import_trace(GPU_EXAMPLE)):.1%}"


def test_lesson_3_precision(in_classroom):
    root, runs = in_classroom
    at = open_lesson("learn_precision")
    run = store.load(at.selectbox(key="l3_pick").value, root)
    mine = [c for c in store.list_comparisons(root) if c.participant == "ann"]
    from dashboard.lesson_view import passes_in

    q = lessons.precision_winner(mine, run.model.name, passes_in(lessons.PRECISION_FAMILIES), run.device.cpu_features)
    assert set(q.options) == {lessons.AS_IS, "bf16", "dynamic-int8"}  # ann's, not bob's or the fusion passes
    assert len(at.dataframe[0].value) == 2
    check_both_answers(at, "l3", q)


def test_lesson_3_try_button_applies_a_pass_to_the_run(in_classroom, tmp_path, monkeypatch):
    root, runs = in_classroom
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path))  # a store of its own: the shared one stays as it is
    base = runs[("ann", 1)]
    store.save(base, tmp_path)
    at = open_lesson("learn_precision")
    label, passes = lessons.precision_tries(base.device.emulated)[0]  # what a participant sees first
    assert [b.label for b in at.button if b.key and b.key.startswith("l3_try_")][0] == f"Try {label}"
    at.button(key=f"l3_try_{passes[0]}").click().run()
    job = wait(at.session_state["l3_job"]["jobs"][0])
    assert job.status == "done", job.error
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [saved] = store.list_comparisons(tmp_path)
    assert saved.passes == passes and saved.source_run_id == base.id and saved.accuracy is not None


def test_lesson_3_offers_the_precisions_this_cpu_runs_natively_first():
    """Twenty participants pressing an emulated bf16 first queued for ten minutes on an AVX2-only CPU."""
    native = lessons.precision_tries([])
    assert [t[1] for t in native][0] == ["bf16"] and not any(t[0].endswith(lessons.EMULATED_TRY) for t in native)
    emulated = lessons.precision_tries(["bf16", "fp16"])
    assert emulated[0][1] == ["dynamic-int8"] and emulated[-1] == ("bf16" + lessons.EMULATED_TRY, ["bf16"])


def test_lesson_4_compilation_and_fusion(in_classroom):
    root, _ = in_classroom
    at = open_lesson("learn_fusion")
    results = at.selectbox(key="l4_result")
    assert len(results.options) == 1  # ann's torchscript-freeze (not her precision results, not bob's)
    by_passes = {tuple(c.passes): c for c in store.list_comparisons(root) if c.participant == "ann"}
    chosen = by_passes[("torchscript-freeze",)]
    results.set_value(chosen.id).run()
    assert {m.label: m.value for m in at.metric}["Speedup"] == f"{chosen.speedup:.2f}x"
    check_both_answers(at, "l4", lessons.biggest_saving(chosen))


def test_lesson_5_batch_size(in_classroom):
    root, runs = in_classroom
    at = open_lesson("learn_batch")
    points = lessons.batch_series([runs[("ann", 4)], runs[("ann", 1)]], lessons.LESSON_MODEL)
    assert [p.batch_size for p in points] == [1, 4]
    table = at.dataframe[0].value
    assert list(table["batch"]) == [1, 4]
    assert list(table["median ms"]) == pytest.approx([p.median_ms for p in points])
    check_both_answers(at, "l5", lessons.best_batch(points))


def test_lesson_5_sweep_runs_one_job_at_a_time_and_cancels(tmp_path):
    at = open_lesson("learn_batch", name="eve")
    at.button(key="l5_sweep").click().run()
    entry = at.session_state["l5_job"]
    assert len(entry["jobs"]) == 1 and len(entry["pending"]) == 3  # batch 1 now, 2, 4 and 8 after it
    from dashboard.state import job_manager

    first = wait(entry["jobs"][0])
    assert first.status == "done" and first.payload["config"]["batch_size"] == 1, first.error
    at.run()  # the page's next look at the series starts the second size
    entry = at.session_state["l5_job"]
    assert len(entry["jobs"]) == 2 and len(entry["pending"]) == 2
    assert job_manager().get(entry["jobs"][1]).payload["config"]["batch_size"] == 2
    at.button(key="l5_job_cancel").click().run()
    second = wait(entry["jobs"][1])
    assert second.status == "cancelled" and at.session_state["l5_job"]["pending"] == []
    assert [r.batch_size for r in store.list_runs()] == [1]  # the cancelled size saved nothing


def test_lesson_6_trains_and_asks_which_phase_dominates(tmp_path, monkeypatch):
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path))
    at = open_lesson("learn_training", name="eve")
    assert any("Train bert-tiny first" in i.value for i in at.info)
    at.button(key="l6_train").click().run()
    job = wait(at.session_state["l6_job"]["jobs"][0], 300)
    assert job.status == "done", job.error
    at.run()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (run,) = [r for r in own_runs(tmp_path, "eve")]
    from profiler.store import load

    full = load(run.id, tmp_path)
    assert full.training is not None and len(full.training.steps) == 5 and full.training.config.batch_size == 8
    check_both_answers(at, "l6", lessons.training_step(full))
