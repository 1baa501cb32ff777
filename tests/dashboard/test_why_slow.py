"""The 'Why slow?' page: roofline, recommendations and Apply on a saved run (no profiling inside the page)."""
import json
import re

import pytest

from optimizers import recommend as advice
from profiler import store
from profiler.jobs import Job
from tests.dashboard.test_pages import open_page, texts


@pytest.fixture
def seeded(tiny_bert_run, monkeypatch, cached_peaks):
    """A saved run, its store, and cached peaks (so the page never measures)."""
    run, root = tiny_bert_run
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    return run, root


class FakeJobs:
    """Stands in for the job manager: an optimize job that is done at once."""

    def __init__(self):
        self.jobs = {}

    def submit(self, spec, config=None, runs_dir=None, arch=None, kind="profile", **extra):
        job = Job(id=f"j{len(self.jobs)}", kind=kind, spec=spec, payload=extra, status="done",
                  result={"id": "c1", "speedup": 2.5, "speedup_low": 2.4, "speedup_high": 2.6,
                          "accuracy": {"cosine": 0.99991, "passed": True}})
        self.jobs[job.id] = job
        return job

    def get(self, job_id):
        return self.jobs.get(job_id)


def test_page_shows_roofline_and_recommendations(seeded):
    run, root = seeded
    at = open_page("why_slow", run.id)
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Measured median"] == f"{run.latency.median_ms:.3g} ms" and "Floor at peak" in metrics
    assert "Recommendations" in [h.value for h in at.subheader]
    # the page lists exactly what the library recommends for this run, in its order, with its estimates
    recs = advice.why_slow(run, root).recommendations
    shown = [m.value for m in at.markdown if re.match(r"\*\*\d+\. .* — estimated", m.value)]  # findings have none
    assert shown == [f"**{i}. {r.title}** — estimated **{r.estimated_speedup:.2f}x**" for i, r in enumerate(recs, 1)]
    assert recs or any("No rule fired" in s.value for s in at.success)


def test_apply_launches_an_optimize_job_and_keeps_the_pair(seeded, monkeypatch):
    run, root = seeded
    fake = FakeJobs()
    monkeypatch.setattr("dashboard.state.job_manager", lambda: fake)
    at = open_page("why_slow", run.id)
    buttons = [b for b in at.button if b.label == "Apply and measure" and not b.disabled]
    assert buttons, texts(at)
    buttons[0].click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (job,) = fake.jobs.values()
    assert job.kind == "optimize" and job.payload["passes"] and job.payload["source_run_id"] == run.id
    assert "Measured 2.50x" in texts(at)
    (pair,) = store.recommendation_pairs(root)
    assert pair["measured"] == 2.5 and pair["passes"] == job.payload["passes"]


def test_sweep_button_starts_a_sweep_job(seeded, monkeypatch):
    run, _ = seeded
    fake = FakeJobs()
    monkeypatch.setattr("dashboard.state.job_manager", lambda: fake)
    at = open_page("why_slow", run.id)
    next(b for b in at.button if b.label == "Sweep batch sizes 1, 2, 4, 8").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (job,) = fake.jobs.values()
    assert (job.kind, job.spec, job.payload["batch_sizes"]) == ("sweep", run.model.spec, [1, 2, 4, 8])
    assert job.payload["seq_lens"] == [run.config.seq_len]


def test_a_saved_sweep_is_plotted_with_its_findings(seeded):
    from profiler import store
    from profiler.schema import Sweep, SweepPoint

    run, root = seeded
    points = [SweepPoint(b, 16, 2, "float32", "cpu", median_ms=m, throughput_per_s=1000 * b / m)
              for b, m in ((1, 2.0), (2, 2.2), (4, 2.6))]
    saved = Sweep(id="sweep-bert-tiny-test", created="2026-11-26T02:00:00+00:00", model=run.model.spec,
                  axes={"batch_size": [1, 2, 4]}, points=points, findings=["a finding to show"], device_name="cpu: x")
    store.save_sweep(saved, root)
    try:
        at = open_page("why_slow", run.id)
        assert not at.error, [e.value for e in at.error]
        assert "a finding to show" in texts(at)
        charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        figure = next(f for f in charts if f["layout"].get("title", {}).get("text") == f"Sweep {saved.id}")
        xs = sorted(x for trace in figure["data"] for x in (trace.get("x") or []) if isinstance(x, (int, float)))
        assert {1, 2, 4} <= set(xs)
    finally:
        (root / "sweeps" / f"{saved.id}.json").unlink(missing_ok=True)


def test_without_peaks_the_page_measures_them_as_a_job(tiny_bert_run, monkeypatch, tmp_path):
    """No cached peaks: the page never measures in the server; it offers the measurement, which runs as a job."""
    run, root = tiny_bert_run
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    monkeypatch.setenv("OPLENS_CACHE_DIR", str(tmp_path / "empty-cache"))
    fake = FakeJobs()
    monkeypatch.setattr("dashboard.state.job_manager", lambda: fake)
    at = open_page("why_slow", run.id)
    assert not at.error and "Measured median" not in {m.label for m in at.metric}
    assert "needs this machine's peaks" in texts(at)
    next(b for b in at.button if b.label == "Measure this machine's peaks").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (job,) = fake.jobs.values()
    assert job.kind == "peaks" and job.payload["device"] == "cpu"
