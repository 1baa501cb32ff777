"""The Ray executor on a real local Ray cluster (one CPU, one `oplens_measure`): a profile and a search run through a
Ray actor, the job protocol's Progress and Saved messages arrive while they run, results land in the head's runs dir
and load, cancel and the timeout stop the job on the node; and the same jobs submitted to a JobManager with
OPLENS_EXECUTOR=ray end "done", tagged with their participant. Plus the pure helpers (what travels, how results come
home) without a cluster."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

ray = pytest.importorskip("ray")

from testdata import ROOT, needs_cuda  # noqa: E402

from optimizers import results  # noqa: E402
from profiler import ProfileConfig, store  # noqa: E402
from profiler.jobs import JobManager, executors, ray_executor  # noqa: E402
from profiler.jobs.protocol import Cancelled, Progress, as_dict  # noqa: E402

# the worker's own stages, as opposed to the executor's "waiting for a free Ray node" / "running on Ray node"
OURS = ("waiting for a free Ray node", "running on Ray node", "bringing the results back")

QUICK = ProfileConfig(device="cpu", warmup=1, repeats=3, min_time_s=1.0, profile_iters=1, graph=False)
ENDLESS = ProfileConfig(device="cpu", warmup=1, repeats=1_000_000, min_time_s=600.0, max_time_s=600.0,
                        profile_iters=1, graph=False)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster on this machine, small: the machine has two cores shared with others."""
    ray.init(num_cpus=1, num_gpus=min(1, torch.cuda.device_count()), resources={ray_executor.MEASURE_RESOURCE: 1},
             include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


class Recorder:
    """on_message for the executor: every message with the time it arrived."""

    def __init__(self, cancel_on: str | None = None):
        self.messages: list[tuple[float, dict]] = []
        self.cancel = threading.Event()
        self.cancel_on = cancel_on

    def __call__(self, msg: dict) -> None:
        self.messages.append((time.monotonic(), msg))
        if self.cancel_on and msg.get("stage") == self.cancel_on:
            self.cancel.set()

    @property
    def final(self) -> dict:
        return self.messages[-1][1]

    def of_type(self, kind: str) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.messages if m["type"] == kind]

    def worker_progress(self) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in self.of_type("progress") if not m["stage"].startswith(OURS)]

    def started_at(self) -> float:
        """When the job began running on a node."""
        return next(t for t, m in self.of_type("progress") if m["stage"].startswith("running on Ray node"))


def worker(**payload) -> list[str]:
    """The job layer's worker command, as the JobManager builds it."""
    return [sys.executable, "-m", "profiler.jobs", json.dumps(payload)]


@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_profile_streams_progress_and_comes_home(cluster, tmp_path, capfd):
    head = tmp_path / "head-runs"
    rec = Recorder()
    code = ray_executor.run(worker(kind="profile", spec="mlp", config=QUICK.to_dict(),
                                   runs_dir=str(head), arch=None), rec, rec.cancel, timeout_s=300)
    assert code == 0
    assert rec.final["type"] == "done", rec.final
    progress = rec.worker_progress()
    stages = [m["stage"] for _, m in progress]
    assert "loading the model" in stages and "timing" in stages
    # streamed while the job ran, not replayed at the end: timing alone takes min_time_s (1 s)
    assert rec.messages[-1][0] - progress[0][0] > 0.8
    # what the worker saved is announced as it saves, before the results travel home and the final message
    assert [m for _, m in rec.of_type("saved")] == [{"type": "saved", "what": "run", "id": rec.final["result"]}]
    assert rec.of_type("saved")[0][0] <= rec.of_type("progress")[-1][0]
    assert rec.of_type("progress")[-1][1]["stage"] == "bringing the results back from the Ray node"
    run = store.load(rec.final["result"], head)
    assert run.model.name == "mlp" and run.latency.median_ms > 0 and len(run.latency.samples_ms) >= 3
    assert os.path.isfile(run.trace_path) and run.trace_path.startswith(str(head))
    assert [s.id for s in store.list_runs(head)] == [run.id]
    assert capfd.readouterr().err == ""  # Ray's log lines stay off our stderr


@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_search_lands_comparison_and_runs_in_head(cluster, tmp_path):
    head = tmp_path / "head-runs"
    rec = Recorder()
    code = ray_executor.run(worker(kind="search", spec="mlp",
                                   config=ProfileConfig(device="cpu", warmup=1, repeats=3, min_time_s=0.0,
                                                        profile_iters=1, graph=False).to_dict(),
                                   runs_dir=str(head), arch=None, budget_s=8, beam=1), rec, rec.cancel, 300)
    assert code == 0 and rec.final["type"] == "done", rec.final
    progress = rec.worker_progress()
    assert progress and rec.messages[-1][0] - progress[0][0] > 0.8  # streamed: the search measured for seconds
    saved = store.load_comparison(rec.final["result"]["id"], head)
    assert ["comparison", saved.id] in [[m["what"], m["id"]] for _, m in rec.of_type("saved")]
    assert saved.kind == "search" and saved.model == "mlp"
    assert store.load(saved.base_run_id, head).model.name == "mlp"
    if saved.optimized_run_id:  # a pipeline won within the budget (on a busy machine the budget may end first)
        assert store.load(saved.optimized_run_id, head).model.name.startswith("mlp+")
    assert [c.id for c in store.list_comparisons(head)] == [saved.id]
    assert results.summary_row(saved)["problem"] == ""


@pytest.mark.slow  # a Ray cluster and two worker processes: seconds each
def test_job_manager_runs_profile_and_search_on_ray(cluster, tmp_path, monkeypatch):
    """The server's path end to end: JobManager -> executors (OPLENS_EXECUTOR=ray) -> a Ray node -> the head's store."""
    monkeypatch.setenv("OPLENS_EXECUTOR", "ray")
    on_ray, real_run = [], ray_executor.run

    def run_on_ray(command, *args, **kwargs):
        on_ray.append(command)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(ray_executor, "run", run_on_ray)
    head = tmp_path / "head-runs"
    jobs = JobManager(head)
    config = ProfileConfig(device="cpu", warmup=1, repeats=3, min_time_s=0.0, profile_iters=1, graph=False)
    profile = jobs.submit("mlp", config, participant="ada")
    search = jobs.submit("mlp", config, kind="search", participant="ada", budget_s=8, beam=1)
    deadline = time.monotonic() + 300
    while (profile.active or search.active) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (profile.status, search.status) == ("done", "done"), (profile.message, search.message)
    assert [json.loads(c[-1])["kind"] for c in on_ray] == ["profile", "search"]  # both went through Ray
    run = store.load(profile.run_id, head)
    assert run.model.name == "mlp" and run.participant == "ada" and run.latency.median_ms > 0
    assert profile.saved == [["run", run.id]]  # the Saved message reached the manager
    saved = store.load_comparison(search.result["id"], head)
    assert saved.kind == "search" and saved.participant == "ada"
    base = store.load(saved.base_run_id, head)
    assert base.participant == "ada" and ["run", base.id] in search.saved and ["comparison", saved.id] in search.saved
    assert {s.id for s in store.list_runs(head)} >= {run.id, base.id}
    assert json.loads((head / "jobs" / f"{search.id}.json").read_text())["status"] == "done"


@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_cancel_stops_the_job_on_the_node(cluster, tmp_path):
    head = tmp_path / "head-runs"
    rec = Recorder(cancel_on="timing")
    code = ray_executor.run(worker(kind="profile", spec="mlp", config=ENDLESS.to_dict(),
                                   runs_dir=str(head), arch=None), rec, rec.cancel, timeout_s=300)
    assert rec.cancel.is_set()
    cancelled_at = next(t for t, m in rec.messages if m.get("stage") == "timing")
    assert rec.final["type"] == "cancelled"
    assert code == 0  # the worker stopped cleanly on SIGINT, it was not killed
    assert rec.messages[-1][0] - cancelled_at < ray_executor.STOP_GRACE_S
    assert store.list_runs(head) == []


@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_timeout_fails_the_job_and_saves_nothing(cluster, tmp_path):
    head = tmp_path / "head-runs"
    rec = Recorder()
    started = time.monotonic()
    code = ray_executor.run(worker(kind="profile", spec="mlp", config=ENDLESS.to_dict(),
                                   runs_dir=str(head), arch=None), rec, rec.cancel, timeout_s=6)
    assert code == executors.TIMED_OUT  # as the local executor reports it, so the manager words it the same way
    assert rec.final["type"] == "failed" and rec.final["reason"].startswith("timed out after 6 s on Ray node")
    assert time.monotonic() - started < 6 + ray_executor.STOP_GRACE_S + 30
    assert store.list_runs(head) == []


def profile_model_file(tmp_path, source: str, timeout_s: int, **env: str):
    """Profile `build` of a model file written under tmp_path/models, on the Ray node: (exit code, Recorder, file)."""
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "model.py"
    path.write_text(source)
    rec = Recorder()
    code = ray_executor.run(worker(kind="profile", spec=f"{path}:build", config=QUICK.to_dict(),
                                   runs_dir=str(tmp_path / "head-runs"), arch=None), rec, rec.cancel, timeout_s,
                            env={**os.environ, "OPLENS_ALLOW_CODE": "1", **env})
    return code, rec, path


@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_model_file_is_shipped_and_its_path_comes_back(cluster, tmp_path):
    code, rec, path = profile_model_file(tmp_path, "import os\nimport torch\n\n\ndef build():\n"
                                         "    width = int(os.environ['OPLENS_TEST_WIDTH'])\n"
                                         "    return torch.nn.Linear(width, 4), (torch.randn(2, width),)\n", 300,
                                         OPLENS_TEST_WIDTH="16")
    assert code == 0 and rec.final["type"] == "done", rec.final
    run = store.load(rec.final["result"], tmp_path / "head-runs")
    # the node loaded its own copy; the run names the head's file, so "optimize this run" can load it again here
    assert run.model.spec == f"{path.resolve()}:build"
    assert run.model.parameters == 16 * 4 + 4  # the caller's environment reached the job on the node


@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_a_job_killed_on_the_node_fails_in_the_job_layers_words(cluster, tmp_path):
    code, rec, _ = profile_model_file(tmp_path, "import os, signal, torch\nclass M(torch.nn.Linear):\n"
                                      "    def forward(self, x):\n        os.kill(os.getpid(), signal.SIGKILL)\n"
                                      "def build():\n    return M(2, 2), torch.ones(1, 2)\n", 120)
    assert code == -9 and rec.final["type"] == "failed"
    assert rec.final["reason"].startswith("the profile process on Ray node ")
    assert executors.died("", -9) in rec.final["reason"]  # "... died (it was killed, most likely for ...)"


@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_one_measurement_at_a_time_per_node(cluster, tmp_path):
    """A second job waits for the node until the first has finished; a job cancelled while waiting never runs."""
    first_running = threading.Event()

    class First(Recorder):
        def __call__(self, msg):
            super().__call__(msg)
            if msg.get("stage", "").startswith("running on Ray node"):
                first_running.set()

    cfg = ProfileConfig(device="cpu", warmup=1, repeats=3, min_time_s=0.3, profile_iters=1, graph=False).to_dict()
    recs = {"first": First(), "second": Recorder(), "dropped": Recorder(cancel_on="waiting for a free Ray node")}

    def submit(name):
        rec = recs[name]
        ray_executor.run(worker(kind="profile", spec="mlp", config=cfg,
                                runs_dir=str(tmp_path / name), arch=None), rec, rec.cancel, 300)

    threads = {name: threading.Thread(target=submit, args=(name,)) for name in recs}
    threads["first"].start()
    assert first_running.wait(120)
    threads["second"].start()
    threads["dropped"].start()
    for t in threads.values():
        t.join(300)
    first, second, dropped = recs["first"], recs["second"], recs["dropped"]
    assert first.final["type"] == "done" and second.final["type"] == "done"
    assert second.started_at() >= first.messages[-1][0]
    assert [m for _, m in dropped.messages] == [as_dict(Progress("waiting for a free Ray node")),
                                                 as_dict(Cancelled("cancelled while waiting for a free Ray node"))]
    assert store.list_runs(tmp_path / "dropped") == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the test cluster has the GPU of this machine")
@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_cuda_job_on_a_cpu_only_cluster_fails_at_once(cluster, tmp_path):
    rec = Recorder()
    code = ray_executor.run(worker(kind="profile", spec="mlp",
                                   config=ProfileConfig(device="cuda").to_dict(), runs_dir=str(tmp_path)),
                            rec, rec.cancel, 60)
    assert code == 1
    assert [m["type"] for _, m in rec.messages] == ["failed"]
    assert "asks for CUDA" in rec.final["reason"] and "no measuring node" in rec.final["reason"]


@pytest.mark.slow  # starts a Ray cluster of its own
def test_a_cluster_without_measuring_nodes_says_so_quietly(tmp_path):
    """connect() as the server does it, to a fresh cluster with no `oplens_measure`: one failed line, no Ray noise."""
    script = ("import json, sys, threading\n"
              "from profiler.jobs import ray_executor\n"
              "msgs = []\n"
              "code = ray_executor.run([sys.executable, '-m', 'profiler.jobs', json.dumps({'spec': 'mlp'})],\n"
              "                        msgs.append, threading.Event(), 60)\n"
              "print(json.dumps([code, msgs]))\n")
    env = {**os.environ, "OPLENS_RAY_ADDRESS": "local", "OPLENS_RUNS_DIR": str(tmp_path / "runs"),
           "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    env.pop("OPLENS_VERBOSE", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240,
                          cwd=tmp_path)
    code, msgs = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 1 and len(msgs) == 1
    assert msgs[0]["type"] == "failed"
    assert f"no node of the Ray cluster offers the '{ray_executor.MEASURE_RESOURCE}' resource" in msgs[0]["reason"]
    assert done.stderr == ""


def test_unreachable_address_fails_fast_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a server that has not connected yet
    monkeypatch.setenv(ray_executor.ADDRESS_ENV, "127.0.0.1:1")
    rec = Recorder()
    started = time.monotonic()
    code = ray_executor.run(worker(spec="mlp", runs_dir=str(tmp_path)), rec, rec.cancel, 60)
    assert code == 1 and time.monotonic() - started < 10
    assert [m for _, m in rec.messages] == [rec.final]
    assert rec.final["type"] == "failed"
    assert rec.final["reason"].startswith("cannot reach the Ray cluster at 127.0.0.1:1")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.slow  # a Ray cluster and a worker process: seconds each
def test_cuda_job_takes_the_gpu_node(cluster, tmp_path):
    rec = Recorder()
    config = ProfileConfig(device="cuda:0", warmup=1, repeats=3, min_time_s=0.3, profile_iters=1, graph=False)
    code = ray_executor.run(worker(kind="profile", spec="mlp", config=config.to_dict(),
                                   runs_dir=str(tmp_path)), rec, rec.cancel, 300)
    assert code == 0 and rec.final["type"] == "done", rec.final
    run = store.load(rec.final["result"], tmp_path)
    assert run.device.kind == "cuda" and run.latency.median_ms > 0


# --- without a cluster ---------------------------------------------------------------------------------------------


def test_env_overrides_carry_settings_not_this_machine(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPLENS_VERBOSE": "1", "OPLENS_RUNS_DIR": "/head/runs",
           "PATH": "/head/bin"}
    assert ray_executor.env_overrides(env) == {"OMP_NUM_THREADS": "1", "OPLENS_VERBOSE": "1"}
    assert ray_executor.env_overrides(None) == {}


def test_gpu_wanted_for_cuda_and_for_auto_on_a_gpu_cluster():
    cfg = lambda device: {"config": {"device": device}}  # noqa: E731
    assert ray_executor.wants_gpu(cfg("cuda:1"), cluster_has_gpu=False)
    assert ray_executor.wants_gpu(cfg("auto"), cluster_has_gpu=True)
    assert not ray_executor.wants_gpu(cfg("auto"), cluster_has_gpu=False)
    assert not ray_executor.wants_gpu(cfg("cpu"), cluster_has_gpu=True)


def test_model_path_names_local_files_only(tmp_path):
    (tmp_path / "m.py").write_text("")
    assert ray_executor.model_path(f"{tmp_path / 'm.py'}:build") == (tmp_path / "m.py").resolve()
    assert ray_executor.model_path(str(tmp_path)) == tmp_path.resolve()
    assert ray_executor.model_path("mlp") is None
    assert ray_executor.model_path("hf:bert-base-uncased") is None
    assert ray_executor.model_path(str(tmp_path / "gone.pt")) is None


def test_bring_home_adds_whole_results_and_keeps_what_was_there(tmp_path):
    node, head = tmp_path / "node", tmp_path / "head"
    (node / "r1").mkdir(parents=True)
    (node / "r1" / "run.json").write_text(json.dumps({"model": {"spec": "/node/job/model/m.py:build"}}))
    (node / "r1" / "w.pt.trace.json.gz").write_bytes(b"trace")
    (node / "comparisons").mkdir()
    (node / "comparisons" / "c1.json").write_text(json.dumps({"spec": "/node/job/model/m.py:build"}))
    (node / "stray").mkdir()  # not a run: stays behind
    (head / "r0").mkdir(parents=True)
    (head / "r0" / "run.json").write_text("{}")
    blob = ray_executor.pack(sorted(node.iterdir()), node)
    arrived = ray_executor.bring_home(blob, head, "/node/job/model/m.py", "/head/models/m.py")
    assert arrived == ["r1", "comparisons/c1.json"]
    assert json.loads((head / "r1" / "run.json").read_text())["model"]["spec"] == "/head/models/m.py:build"
    assert json.loads((head / "comparisons" / "c1.json").read_text())["spec"] == "/head/models/m.py:build"
    assert (head / "r1" / "w.pt.trace.json.gz").read_bytes() == b"trace"
    assert (head / "r0" / "run.json").read_text() == "{}"
    assert sorted(p.name for p in head.iterdir()) == ["comparisons", "r0", "r1"]  # no temp folder left


def test_model_bundle_ships_sidecar_and_leaves_big_models_to_a_shared_fs(tmp_path):
    (tmp_path / "m.pt").write_bytes(b"x" * 2048)
    (tmp_path / "m.inputs.pt").write_bytes(b"inputs")
    name, blob = ray_executor.model_bundle(str(tmp_path / "m.pt"))
    ray_executor.unpack(blob, tmp_path / "node")
    assert name == "m.pt" and sorted(p.name for p in (tmp_path / "node").iterdir()) == ["m.inputs.pt", "m.pt"]
    assert ray_executor.model_bundle(str(tmp_path / "m.pt"), limit=1024) is None
    assert ray_executor.model_bundle("mlp") is None
