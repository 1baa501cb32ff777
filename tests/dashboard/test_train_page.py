"""The Train page on a real training run: the step's figures, the input verdict, the charts, the memory timeline."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

from profiler import store
from profiler.measure.train import train
from profiler.models.loading import load_model
from profiler.schema import TrainConfig

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def test_train_page_shows_a_training_run(tmp_path, monkeypatch):
    run = train(load_model("mlp-tiny"), TrainConfig(batch_size=4, steps=2, warmup=1))
    store.save(run, tmp_path)
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["run_id"] = run.id
    at.run()
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step (median)"] == f"{run.training.wall.median:.3g} ms"
    assert metrics["Peak memory"] == f"{run.training.memory.peak_bytes / 2**20:,.1f} MiB"
    assert any("not input-bound" in s.value for s in at.success)
    assert len(at.get("plotly_chart")) == 3  # phases per step, categories, memory over the step
