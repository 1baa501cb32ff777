"""Jobs in real worker processes: they finish, fail with the model's own reason (raise, abort, segfault, hang past
the timeout, an absurd allocation, killed for memory) while the server and the next job carry on, and cancel
honestly. The Queue page and a reloaded Profile page find jobs from their records."""
import json
import os
import socket
import time
from pathlib import Path

import pytest

from streamlit.testing.v1 import AppTest
from testdata import wait

from profiler import ProfileConfig, store
from profiler.jobs import Job, JobManager, executors, manager
from profiler.schema import GenerationResult, PassResult

FAST = dict(warmup=1, repeats=3, min_time_s=0.0, profile_iters=1)
APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")

HOSTILE = '''
import ctypes, os, time, torch

class Raise(torch.nn.Linear):
    def forward(self, x):
        raise ValueError("this model refuses to run")

class Abort(torch.nn.Linear):
    def forward(self, x):
        os.abort()

class Segfault(torch.nn.Linear):
    def forward(self, x):
        return ctypes.string_at(0)

class Hang(torch.nn.Linear):
    def forward(self, x):
        time.sleep(3600)

class Huge(torch.nn.Linear):
    def forward(self, x):
        return torch.empty(2**44).sum() + x

class Chatty(torch.nn.Linear):  # well behaved, but prints half lines on stdout, where the protocol speaks
    def forward(self, x):
        print('{"type": "done", "res', end="")
        return super().forward(x)

def make(cls):
    return lambda: (cls(2, 2), torch.ones(1, 2))

raises, aborts, segfaults, hangs, huge = make(Raise), make(Abort), make(Segfault), make(Hang), make(Huge)
chatty = make(Chatty)
'''



def test_job_profiles_and_saves_tagged_with_its_participant(tmp_path):
    job = wait(JobManager().submit("mlp-tiny", ProfileConfig(**FAST), str(tmp_path), participant="ann"))
    assert job.status == "done" and job.fraction == 1.0
    assert job.saved == [["run", job.run_id]]
    run = store.load(job.run_id, tmp_path)
    assert run.model.name == "mlp-tiny" and run.participant == "ann"


def test_bad_model_fails_with_its_message(tmp_path):
    job = wait(JobManager().submit("no-such-model", ProfileConfig(**FAST), str(tmp_path)))
    assert job.status == "failed" and "unknown model 'no-such-model'" in job.error
    assert job.error.endswith("; nothing was saved")
    assert store.list_runs(tmp_path) == []


@pytest.mark.slow  # four hostile models, each its own worker process: ~27 s
def test_hostile_models_fail_their_own_job_and_the_queue_carries_on(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "GRACE_S", 1.0)  # a hung model ignores SIGINT: kill it soon after
    monkeypatch.setenv("OPLENS_ALLOW_CODE", "1")  # .py models run code: only on a server started to allow it
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(tmp_path))
    models = tmp_path / "hostile.py"
    models.write_text(HOSTILE)
    jobs = JobManager(max_queued=10)
    config = ProfileConfig(**FAST, graph=False)
    hostile = {name: jobs.submit(f"{models}:{name}", config, str(tmp_path / "runs"), timeout_s=8 if name == "hangs"
                                 else None) for name in ("raises", "aborts", "segfaults", "hangs", "huge")}
    good = jobs.submit(f"{models}:chatty", config, str(tmp_path / "runs"))
    for job in [*hostile.values(), good]:
        wait(job, timeout=180)
    errors = {name: job.error for name, job in hostile.items()}
    assert all(job.status == "failed" for job in hostile.values()), errors
    assert "raised ValueError while running: this model refuses to run" in errors["raises"]
    assert errors["aborts"].startswith("the profile process died (it crashed with SIGABRT)")
    assert errors["segfaults"].startswith("the profile process died (it crashed with SIGSEGV)")
    assert errors["hangs"] == "timed out after 8 s; nothing was saved"
    assert "out of memory" in errors["huge"] and "asked for 65,536.0 GiB" in errors["huge"]
    assert all(e.endswith("; nothing was saved") for e in errors.values())
    assert good.status == "done" and [r.id for r in store.list_runs(tmp_path / "runs")] == [good.run_id]


def test_cancel_stops_and_says_nothing_was_saved(tmp_path):
    jobs = JobManager()
    job = jobs.submit(
        "bert-tiny", ProfileConfig(warmup=1, repeats=10_000, min_time_s=60, max_time_s=120), str(tmp_path)
    )
    while job.stage in ("waiting in the queue", "starting a worker process", "loading the model"):
        time.sleep(0.1)
    jobs.cancel(job.id)
    wait(job, timeout=60)
    assert job.status == "cancelled" and job.message == "cancelled; nothing was saved"
    assert store.list_runs(tmp_path) == []


def test_a_model_that_kills_its_process_does_not_kill_the_server(tmp_path, monkeypatch):
    monkeypatch.setenv("OPLENS_ALLOW_CODE", "1")  # a .py model runs code: the server must be started to allow it
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(tmp_path))
    f = tmp_path / "suicide.py"
    f.write_text("import os, signal, torch\nclass M(torch.nn.Linear):\n    def forward(self, x):\n"
                 "        os.kill(os.getpid(), signal.SIGKILL)\ndef build():\n    return M(2, 2), torch.ones(1, 2)\n")
    job = wait(JobManager().submit(f"{f}:build", ProfileConfig(**FAST), str(tmp_path / "runs")))
    assert job.status == "failed" and "killed, most likely for running out of memory" in job.error


def seed(*jobs: Job) -> None:
    """Job records as this server process would have left them, in the runs dir the pages use."""
    folder = store.runs_dir() / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.server = job.server or f"{socket.gethostname()}:{os.getpid()}"
        (folder / f"{job.id}.json").write_text(json.dumps(job.to_dict()))


def queue_page(**session) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    for k, v in session.items():
        at.session_state[k] = v
    at.run()
    at.switch_page("app_pages/queue.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_queue_page_hides_other_models_and_lets_the_instructor_clear_it():
    now = time.time()
    seed(Job(id="j-run", kind="profile", spec="ann-secret.py:build", payload={}, participant="ann",
             status="running", submitted=now - 30, started=now - 20),
         Job(id="j-bob", kind="optimize", spec="bert-tiny", payload={}, participant="bob", submitted=now - 10),
         Job(id="j-cy", kind="profile", spec="cy-model.py:build", payload={}, participant="cy", submitted=now - 5))
    at = queue_page(participant="bob")
    table = at.dataframe[0].value
    assert list(table["position"]) == [0, 1, 2]
    assert list(table["model"]) == ["(hidden)", "bert-tiny", "(hidden)"]
    assert list(table["participant"]) == ["ann", "bob (you)", "cy"]
    assert not [b for b in at.button if b.label == "Clear the queue"]
    assert any("waiting in the queue: number 1" in i.value for i in at.info)  # bob's own job, with its wait
    (cancel,) = [b for b in at.button if b.label == "Cancel"]  # his own only
    cancel.click().run()
    assert [t.value for t in at.toast] == ["cancelled before it started; nothing was saved"]
    at.run()  # the table above the button is drawn again on the next tick
    assert list(at.dataframe[0].value["id"]) == ["j-run", "j-cy"]
    assert list(at.dataframe[1].value["state"]) == ["cancelled"]  # bob's recent jobs

    at = queue_page(participant="dee", instructor=True)
    assert list(at.dataframe[0].value["model"]) == ["ann-secret.py:build", "cy-model.py:build"]
    next(b for b in at.button if b.label == "Clear the queue").click().run()
    assert any(s.value == "Cancelled 1 waiting jobs." for s in at.success)
    assert list(at.dataframe[0].value["id"]) == ["j-run"]


def test_a_reloaded_profile_page_finds_the_participants_job():
    seed(Job(id="j-ann", kind="profile", spec="mlp-tiny", payload={}, participant="ann", status="failed",
             error="the profile process died (it crashed with SIGSEGV); nothing was saved"))
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["participant"] = "ann"
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Profiling failed: the profile process died (it crashed with SIGSEGV); nothing was saved"]


@pytest.mark.slow  # a sweep and a generation through the queue: ~15 s (lesson 5 and the Generate page cover both)
def test_sweep_and_generate_run_as_jobs(tmp_path):
    jobs = JobManager()
    sweep = jobs.submit("mlp-tiny", ProfileConfig(**FAST), str(tmp_path), kind="sweep", batch_sizes=[1, 2],
                        participant="ann")
    gen = jobs.submit("llama-tiny", kind="generate", passes=["bf16"], generate={"prompt_len": 8, "new_tokens": 4},
                      rounds=1)
    wait(sweep, timeout=180)
    wait(gen, timeout=180)
    assert sweep.status == "done" and sweep.saved == [["sweep", sweep.result]], sweep.error
    assert [p.batch_size for p in store.load_sweep(sweep.result, tmp_path).points] == [1, 2]
    assert gen.status == "done", gen.error
    (result,) = [GenerationResult.from_dict(r) for r in gen.result]
    assert result.config.prompt_len == 8 and result.config.new_tokens == 4
    assert [(p.name, p.applied) for p in result.passes] == [("bf16", True)]


def test_generate_page_runs_its_optimize_as_a_job(monkeypatch):
    answer = GenerationResult(model="llama-tiny", passes=[
        PassResult(name="bf16", applied=True),
        PassResult(name="int8-weight-bf16", applied=False, reason="quantization starts from float32 weights")])
    seen = []

    def worker(command, on_message, cancel, timeout_s=None, env=None):
        seen.append(json.loads(command[-1]))
        on_message({"type": "done", "result": [answer.to_dict()]})
        return 0

    monkeypatch.setattr(manager, "executor", lambda name=None: ("script", worker))
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["participant"] = "ann"
    at.run()
    at.switch_page("app_pages/generate.py").run()
    at.text_input(key="gen_opt_model").set_value("llama-tiny")
    at.multiselect(key="gen_opt_passes").set_value(["bf16"])
    next(b for b in at.button if b.label == "Optimize").click().run()

    def results_table():
        return next((d.value for d in at.dataframe if "pipeline" in d.value.columns), None)

    deadline = time.time() + 10
    while results_table() is None and time.time() < deadline:
        time.sleep(0.1)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    (payload,) = seen
    assert (payload["kind"], payload["spec"], payload["passes"], payload["participant"]) == \
        ("generate", "llama-tiny", ["bf16"], "ann")
    assert payload["generate"] == {"prompt_len": 32, "new_tokens": 16}
    assert list(results_table()["pipeline"]) == ["bf16"]  # a table, not monospace text clipped on the right
    # a pass that did not apply says why, on the page, as in the CLI
    passes = at.dataframe[-1].value
    assert list(passes["pass"]) == ["bf16", "int8-weight-bf16"]
    assert list(passes["why not"]) == ["", "quantization starts from float32 weights"]


def test_a_trace_imports_as_a_job_and_a_bad_one_fails_in_one_line(tmp_path):
    jobs = JobManager()
    trace = Path(__file__).resolve().parents[1] / "data" / "cpu_only.pt.trace.json.gz"
    good = jobs.submit(trace.name, kind="import", paths=[str(trace)], participant="ann")
    bad = jobs.submit("notes.txt", kind="import", paths=[str(tmp_path / "notes.txt")])
    wait(good)
    wait(bad)
    assert good.status == "done" and good.saved == [["run", good.run_id]], good.error
    run = store.load(good.run_id)
    assert run.model.source == "trace" and run.participant == "ann" and run.ops
    assert bad.status == "failed" and "this server reads traces only from" in bad.error
    assert bad.error.endswith("; nothing was saved") and "\n" not in bad.error


def test_cancelling_an_optimize_after_its_base_run_says_the_base_run_was_kept(tmp_path):
    jobs = JobManager()
    job = jobs.submit("mlp-tiny", ProfileConfig(warmup=1, repeats=3, min_time_s=3.0, profile_iters=1, graph=False),
                      str(tmp_path), kind="optimize", passes=["magnitude-prune"], participant="ann")
    deadline = time.time() + 120
    while not job.saved and job.active and time.time() < deadline:
        time.sleep(0.05)
    assert job.saved and job.saved[0][0] == "run", job.error
    jobs.cancel(job.id)
    wait(job, timeout=60)
    base = job.saved[0][1]
    assert job.status == "cancelled"
    assert job.message == f"cancelled; the base run {base} was saved, the optimized run and the comparison were not"
    assert [r.id for r in store.list_runs(tmp_path)] == [base] and store.load(base, tmp_path).participant == "ann"
    assert store.list_comparisons(tmp_path) == []
