"""The Train page on a real training run: the step's figures, the input verdict, the charts, the memory timeline."""
from profiler import store
from profiler.measure.train import train
from profiler.models.loading import load_model
from profiler.schema import TrainConfig
from tests.dashboard.test_pages import open_page


def open_train(run, root, monkeypatch):
    """`run` saved in `root` and the Train page opened on it (open_page checks for exceptions)."""
    store.save(run, root)
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    return open_page("train", run.id, timeout=60)


def test_train_page_shows_a_training_run(tmp_path, monkeypatch):
    run = train(load_model("mlp-tiny"), TrainConfig(batch_size=4, steps=2, warmup=1))
    at = open_train(run, tmp_path, monkeypatch)
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step (median)"] == f"{run.training.wall.median:.3g} ms"
    assert metrics["Peak memory"] == f"{run.training.memory.peak_bytes / 2**20:,.1f} MiB"
    assert any("not input-bound" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 3  # phases per step, categories, memory over the step
    assert any(b.label == "Apply and prove" for b in at.button)  # a live run's model can take training passes


def test_train_page_applies_a_training_pass_and_shows_its_proof(tmp_path, monkeypatch):
    """The Done's "applies a training pass and gets its speedup with the loss agreement", from the page: the job
    proves fused-optimizer on the run's model, the result is kept as a comparison and shown again on a fresh page."""
    from testdata import wait

    from dashboard.state import job_manager
    from profiler.store import list_comparisons

    run = train(load_model("mlp-tiny"), TrainConfig(batch_size=4, steps=2, warmup=1))
    at = open_train(run, tmp_path, monkeypatch)
    at.multiselect(key="train_passes").set_value(["fused-optimizer"])
    at.button(key="FormSubmitter:trainpasses-Apply and prove").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = wait(job_manager().get(at.session_state["train_passes_job"]), 240)
    assert job.status == "done", job.error
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    (kept,) = [c for c in list_comparisons(tmp_path) if c.kind == "train"]
    [result] = kept.training
    assert kept.source_run_id == run.id and kept.passes == ["fused-optimizer"] and result.speedup.rounds == 2
    assert kept.accuracy.passed == result.agrees and result.base_losses and result.new_losses
    table = at.dataframe[-1].value
    assert table.iloc[0]["passes"] == "fused-optimizer" and table.iloc[0]["speedup"] == f"{result.speedup.median:.2f}x"
    assert any(result.verdict in b.value for b in [*at.success, *at.warning])
    assert any("Loss curves" in str(c.proto.spec) for c in at.get("plotly_chart"))
    fresh = open_page("train", run.id, timeout=60)  # another session: the kept result is shown
    assert any(f"Last kept for {run.model.spec or run.model.name}" in c.value for c in fresh.caption)
    assert fresh.dataframe[-1].value.iloc[0]["passes"] == "fused-optimizer"
    fresh.switch_page("app_pages/runs.py").run()  # the Runs page lists it with the others and shows it the same way
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert any(c.value.startswith(f"Train on {kept.model}: fused-optimizer") for c in fresh.caption)


def test_a_recorded_run_offers_no_apply_and_says_why(tmp_path, monkeypatch):
    """A run from `profiler.record_training` in someone's script: OpLens has no model to apply passes to."""
    import torch

    import profiler

    model = torch.nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with profiler.record_training(name="script", steps=2, warmup=1, runs_dir=tmp_path) as rec:
        for _ in range(3):
            loss = model(torch.randn(4, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss)
    (summary,) = store.list_runs(tmp_path)
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path))
    at = open_page("train", summary.id)
    assert not at.error
    assert any("OpLens has no model to train here" in i.value for i in at.info)
    assert not any(b.label == "Apply and prove" for b in at.button)
