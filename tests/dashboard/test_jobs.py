"""Profile jobs run in a worker process: they finish, fail with the model's message, cancel, and survive a crash."""
import time


from dashboard.jobs import JobManager
from profiler import ProfileConfig, store

FAST = dict(warmup=1, repeats=3, min_time_s=0.0, profile_iters=1)


def wait(job, timeout=120):
    deadline = time.time() + timeout
    while job.active and time.time() < deadline:
        time.sleep(0.1)
    assert not job.active, f"job still {job.status} at {job.stage}"
    return job


def test_job_profiles_and_saves(tmp_path):
    job = wait(JobManager().submit("mlp-tiny", ProfileConfig(**FAST), str(tmp_path)))
    assert job.status == "done" and job.fraction == 1.0
    assert store.load(job.run_id, tmp_path).model.name == "mlp-tiny"


def test_bad_model_fails_with_its_message(tmp_path):
    job = wait(JobManager().submit("no-such-model", ProfileConfig(**FAST), str(tmp_path)))
    assert job.status == "failed" and "unknown model 'no-such-model'" in job.error
    assert store.list_runs(tmp_path) == []


def test_cancel_stops_and_saves_nothing(tmp_path):
    jobs = JobManager()
    job = jobs.submit(
        "bert-tiny", ProfileConfig(warmup=1, repeats=10_000, min_time_s=60, max_time_s=120), str(tmp_path)
    )
    while job.stage in ("starting", "starting a worker process", "loading the model"):
        time.sleep(0.1)
    jobs.cancel(job.id)
    wait(job, timeout=60)
    assert job.status == "cancelled"
    assert store.list_runs(tmp_path) == []


def test_a_model_that_kills_its_process_does_not_kill_the_server(tmp_path, monkeypatch):
    monkeypatch.setenv("OPLENS_ALLOW_CODE", "1")  # a .py model runs code: the server must be started to allow it
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(tmp_path))
    f = tmp_path / "suicide.py"
    f.write_text("import os, signal, torch\nclass M(torch.nn.Linear):\n    def forward(self, x):\n"
                 "        os.kill(os.getpid(), signal.SIGKILL)\ndef build():\n    return M(2, 2), torch.ones(1, 2)\n")
    job = wait(JobManager().submit(f"{f}:build", ProfileConfig(**FAST), str(tmp_path / "runs")))
    assert job.status == "failed" and "killed, most likely for running out of memory" in job.error
