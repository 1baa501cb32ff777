"""The job layer: its protocol, the kinds registry and its wording, and the queue (order, per-participant limit,
place and wait, cancel, records that outlive the manager). Workers are replaced by a scripted executor here, so
these tests need no model; tests/dashboard/test_jobs.py runs real worker processes with hostile models. (Not named
test_jobs.py too: two test modules with one basename break collecting the whole suite.)"""
import io
import json
import subprocess
import sys
import threading
import time

import pytest

from dashboard import queue_view
from profiler import ProfileConfig, store
from profiler.jobs import JobManager, QueueFull, kinds, manager
from profiler.jobs.manager import Job, duration_text
from profiler.jobs.protocol import Cancelled, Done, Failed, Progress, Saved, decode, encode
from profiler.jobs.worker import serve
from profiler.schema import OpLensError, SavedComparison

# -- protocol ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("message", [Progress("timing", 0.25), Saved("run", "r-1"), Done({"id": "c-1", "x": [1]}),
                                     Done("r-2"), Failed("boom"), Cancelled("cancelled while loading the model")])
def test_every_message_survives_a_round_trip(message):
    line = encode(message)
    assert line.endswith("\n") and line.count("\n") == 1
    assert decode(line) == message
    assert decode(json.loads(line)) == message  # as an executor that parsed the line hands it over


@pytest.mark.parametrize("line", ["hello from the model", "[1, 2]", '{"type": "gossip"}', '{"type": "saved"}', ""])
def test_lines_that_are_not_ours_are_skipped(line):
    assert decode(line) is None


def test_a_bad_payload_fails_in_one_message():
    not_json = "bad job payload: not a JSON object"
    for argv, reason in ((["not json"], not_json), ([], not_json),
                         ([json.dumps({"kind": "teleport"})],
                          "bad job payload: unknown job kind 'teleport'; known: profile, sweep, profile-generation, "
                          "train, import, peaks, check, optimize, search, generate, train-passes")):
        out = io.StringIO()
        assert serve(argv, out) == 2
        assert decode(out.getvalue()) == Failed(reason)


# -- kinds ---------------------------------------------------------------------------------------------------------

def test_optimizer_kinds_resolve_lazily():
    code = ("import sys, profiler.jobs; before = 'optimizers' in sys.modules; "
            "from profiler.jobs import kinds; f = kinds.function('optimize'); "
            "print(before, f.__module__, kinds.function('profile').__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "optimizers.worker", "profiler.jobs.worker"]
    assert set(kinds.KINDS) >= {"profile", "check", "optimize", "search", "sweep", "generate", "import"}
    with pytest.raises(OpLensError, match="unknown job kind 'teleport'"):
        kinds.function("teleport")


def test_outcome_says_what_was_kept():
    assert kinds.outcome("optimize", "cancelled", [("run", "r-1")]) == \
        "cancelled; the base run r-1 was saved, the optimized run and the comparison were not"
    assert kinds.outcome("search", "failed", [("run", "r-1"), ("comparison", "c-1")]) == \
        "failed; the base run r-1 and the comparison c-1 were saved, the best run was not"
    assert kinds.outcome("profile", "cancelled", []) == "cancelled; nothing was saved"
    assert kinds.outcome("profile", "cancelled", [("run", "r-9")]) == "cancelled; the run r-9 was saved"
    assert kinds.outcome("check", "model file not found: m.py", []) == "model file not found: m.py"


def test_saving_as_tags_and_reports_what_is_saved(tmp_path):
    seen = []
    record = SavedComparison(id="c-1", created="2026-01-01", kind="apply", model="m", spec="m",
                             config=ProfileConfig(), passes=[])
    with store.saving_as("ann", lambda what, ident: seen.append((what, ident))):
        store.save_comparison(record, tmp_path)
    store.save_comparison(SavedComparison(**{**record.__dict__, "id": "c-2", "participant": ""}), tmp_path)
    assert seen == [("comparison", "c-1")]  # outside the block nothing is reported
    assert store.load_comparison("c-1", tmp_path).participant == "ann"
    assert store.load_comparison("c-2", tmp_path).participant == ""


# -- the queue, with a scripted executor ----------------------------------------------------------------------------

class Script:
    """Stands in for a worker: each job waits for its gate, may save a run, then ends as told."""

    def __init__(self):
        self.started: list[str] = []
        self.gates: dict[str, threading.Event] = {}
        self.saves: dict[str, list[str]] = {}

    def gate(self, spec: str) -> threading.Event:
        return self.gates.setdefault(spec, threading.Event())

    def __call__(self, command, on_message, cancel, timeout_s=None, env=None):
        payload = json.loads(command[-1])
        spec = payload["spec"]
        self.started.append(spec)
        on_message(json.loads(encode(Progress("working", 0.5))))
        for ident in self.saves.get(spec, []):
            on_message(json.loads(encode(Saved("run", ident))))
        while not self.gate(spec).wait(0.01):
            if cancel.is_set():
                on_message(json.loads(encode(Cancelled("cancelled"))))
                return 0
        on_message(json.loads(encode(Done(f"run-of-{spec}"))))
        return 0


@pytest.fixture
def script(monkeypatch):
    s = Script()
    monkeypatch.setattr(manager, "executor", lambda name=None: ("script", s))
    return s


def until(predicate, timeout=10):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_first_come_first_served_across_participants(script, tmp_path):
    jobs = JobManager(tmp_path)
    a = jobs.submit("a", ProfileConfig(), participant="ann")
    b = jobs.submit("b", ProfileConfig(), participant="bob")
    c = jobs.submit("c", ProfileConfig(), participant="ann")
    until(lambda: a.status == "running")
    assert [jobs.position(j) for j in (a, b, c)] == [0, 1, 2]
    assert [j.id for j in jobs.queue()] == [a.id, b.id, c.id]
    check = jobs.submit("x", ProfileConfig(), kind="check", participant="ann")  # loads only: does not wait
    until(lambda: "x" in script.started)
    assert jobs.position(check) is None and b.status == "queued"
    script.gate("x").set()
    for job in (a, b, c):
        script.gate(job.spec).set()
        until(lambda: not job.active)
    assert script.started == ["a", "x", "b", "c"]
    assert [j.status for j in (a, b, c)] == ["done"] * 3 and c.run_id == "run-of-c"


def test_each_participant_may_queue_only_so_many(script, tmp_path, monkeypatch):
    jobs = JobManager(tmp_path, max_queued=2)
    jobs.submit("a1", ProfileConfig(), participant="ann")
    jobs.submit("a2", ProfileConfig(), participant="ann")
    with pytest.raises(QueueFull, match=r"^ann has 2 jobs queued or running already, the most allowed "
                                        r"\(OPLENS_MAX_QUEUED=2\); wait for one to finish or cancel one$"):
        jobs.submit("a3", ProfileConfig(), participant="ann")
    assert jobs.submit("b1", ProfileConfig(), participant="bob").status in ("queued", "running")
    assert len(jobs.jobs("ann")) == 2
    monkeypatch.setenv("OPLENS_MAX_QUEUED", "lots")
    with pytest.raises(OpLensError, match="OPLENS_MAX_QUEUED must be a whole number of at least 1, not 'lots'"):
        JobManager(tmp_path / "other")
    monkeypatch.setenv("OPLENS_MAX_QUEUED", "1")
    assert JobManager(tmp_path / "other").max_queued == 1
    for gate in ("a1", "a2", "b1"):
        script.gate(gate).set()


def test_the_same_job_twice_is_one_job(script, tmp_path):
    """Issue 21: Enter in the model field and then the button started two identical jobs, both saved. The same
    intent from the same owner while the first is queued or running is refused, naming the first; another owner, or
    other settings, or the same once the first has ended, is a new job."""
    from profiler.jobs import DuplicateJob

    jobs = JobManager(tmp_path)
    first = jobs.submit("m", ProfileConfig(batch_size=2), participant="ann", passes=["bf16"])
    with pytest.raises(DuplicateJob, match=rf"^the same profile of m is already (queued|running) \(job {first.id}\)") \
            as refused:
        jobs.submit("m", ProfileConfig(batch_size=2), participant="ann", passes=["bf16"])
    assert refused.value.job is first and len(jobs.jobs("ann")) == 1
    other = [jobs.submit("m", ProfileConfig(batch_size=4), participant="ann", passes=["bf16"]),
             jobs.submit("m", ProfileConfig(batch_size=2), participant="bob", passes=["bf16"]),
             jobs.submit("m", ProfileConfig(batch_size=2), owner="session:2", passes=["bf16"]),
             jobs.submit("m", ProfileConfig(batch_size=2), owner="session:3", passes=["bf16"])]
    assert len({j.id for j in [first, *other]}) == 5  # two unnamed browser sessions are two owners
    script.gate("m").set()
    until(lambda: not any(j.active for j in [first, *other]))
    assert jobs.submit("m", ProfileConfig(batch_size=2), participant="ann", passes=["bf16"]).id != first.id


def test_place_and_estimated_wait_come_from_recent_jobs_of_the_kind(script, tmp_path):
    (tmp_path / "jobs").mkdir()
    for job in (Job(id="old", kind="profile", spec="m", payload={}, status="done", started=100.0, finished=140.0),
                Job(id="older", kind="profile", spec="m", payload={}, status="done", started=10.0, finished=30.0),
                Job(id="failed", kind="profile", spec="m", payload={}, status="failed", started=1.0, finished=900.0)):
        (tmp_path / "jobs" / f"{job.id}.json").write_text(json.dumps(job.to_dict()))
    jobs = JobManager(tmp_path)
    a = jobs.submit("a", ProfileConfig())
    b = jobs.submit("b", ProfileConfig(), participant="bob")
    s = jobs.submit("s", ProfileConfig(), kind="search", budget_s=120, participant="sue")
    c = jobs.submit("c", ProfileConfig(), participant="cy")
    until(lambda: a.status == "running")
    assert jobs.estimate_s(a) == 30.0  # median of the done ones (40, 20); the failed one does not count
    assert jobs.estimate_s(s) == 120.0
    assert jobs.wait_s(a) == 0.0
    assert jobs.wait_s(b) == pytest.approx(30.0, abs=1.0)
    assert jobs.wait_s(s) == pytest.approx(60.0, abs=1.0)
    assert jobs.wait_s(c) == pytest.approx(180.0, abs=1.0)
    assert jobs.waiting_text(c).startswith("waiting in the queue: number 3, about 3 min 0 s before it starts") or \
        jobs.waiting_text(c).startswith("waiting in the queue: number 3, about 2 min 59 s before it starts")
    rows = queue_view.queue_rows(jobs, "bob")
    assert [(r["position"], r["model"], r["participant"]) for r in rows] == [
        (0, "(hidden)", "-"), (1, "b", "bob (you)"), (2, "(hidden)", "sue"), (3, "(hidden)", "cy")]
    assert [r["model"] for r in queue_view.queue_rows(jobs, "bob", instructor=True)] == ["a", "b", "s", "c"]
    # the table's waits are wait_s's and estimate_s's (one pass over the queue; a second may tick between calls)
    near = lambda x: {duration_text(x - 1), duration_text(x), duration_text(x + 1)}
    assert [r["starts in"] for r in rows][0] == "running"
    assert [rows[i]["starts in"] in near(w) for i, w in ((1, 30), (2, 60), (3, 180))] == [True] * 3
    assert [rows[i]["ends in"] in near(w) for i, w in ((1, 60), (2, 180), (3, 210))] == [True] * 3
    # an unnamed session sees the model of the job it started, not every unnamed participant's
    unnamed = queue_view.queue_rows(jobs, "", own_ids=[s.id])
    assert [r["model"] for r in unnamed] == ["(hidden)", "(hidden)", "s", "(hidden)"]
    for job in (a, b, s, c):
        script.gate(job.spec).set()
    until(lambda: not c.active)


def test_cancel_queued_and_running_jobs_says_what_was_kept(script, tmp_path):
    jobs = JobManager(tmp_path)
    script.saves["opt"] = ["r-base"]
    running = jobs.submit("opt", ProfileConfig(), kind="optimize", passes=["bf16"])
    waiting = jobs.submit("w", ProfileConfig(), participant="bob")
    until(lambda: running.saved)
    assert jobs.cancel(waiting.id) == "cancelled before it started; nothing was saved"
    assert waiting.status == "cancelled" and "w" not in script.started
    jobs.cancel(running.id)
    until(lambda: not running.active)
    assert running.status == "cancelled"
    assert running.message == "cancelled; the base run r-base was saved, the optimized run and the comparison were not"
    assert jobs.cancel(running.id) == f"job {running.id} already ended (cancelled)"


def test_clear_queue_cancels_the_waiting_jobs_only(script, tmp_path):
    jobs = JobManager(tmp_path)
    a, b, c = (jobs.submit(s, ProfileConfig(), participant=s) for s in "abc")
    until(lambda: a.status == "running")
    assert jobs.clear_queue() == 2
    assert (a.status, b.status, c.status) == ("running", "cancelled", "cancelled")
    script.gate("a").set()
    until(lambda: a.status == "done")
    assert script.started == ["a"]


def test_jobs_outlive_their_manager(script, tmp_path):
    jobs = JobManager(tmp_path)
    done = jobs.submit("d", ProfileConfig(), participant="ann")
    script.gate("d").set()
    until(lambda: not done.active)
    record = json.loads((tmp_path / "jobs" / f"{done.id}.json").read_text())
    assert record["status"] == "done" and record["participant"] == "ann" and record["result"] == "run-of-d"
    again = JobManager(tmp_path).get(done.id)
    assert (again.status, again.result, again.participant, again.spec) == ("done", "run-of-d", "ann", "d")
    assert JobManager(tmp_path).latest("ann", "profile").id == done.id
    history = queue_view.history_rows(JobManager(tmp_path), "ann")
    assert [(r["kind"], r["model"], r["state"], r["outcome"]) for r in history] == [("profile", "d", "done", "done")]
    assert queue_view.history_rows(JobManager(tmp_path), "bob") == []
    assert queue_view.history_rows(JobManager(tmp_path), "") == []


def test_a_restarted_server_fails_lost_jobs_and_runs_waiting_ones(script, tmp_path):
    folder = tmp_path / "jobs"
    folder.mkdir()
    dead = f"{__import__('socket').gethostname()}:999999999"
    lost = Job(id="lost", kind="optimize", spec="m", payload={}, status="running", started=1.0, server=dead,
               saved=[["run", "r-base"]])
    waiting = Job(id="waiting", kind="profile", spec="w", payload={"spec": "w"}, server=dead)
    elsewhere = Job(id="elsewhere", kind="profile", spec="e", payload={}, status="running", server="otherhost:1")
    for job in (lost, waiting, elsewhere):
        (folder / f"{job.id}.json").write_text(json.dumps(job.to_dict()))
    (folder / "torn.json").write_text('{"id": "torn", "kin')
    jobs = JobManager(tmp_path)
    assert jobs.get("lost").status == "failed"
    assert jobs.get("lost").error == ("the server stopped while this job was running, so it was lost; the base run "
                                      "r-base was saved, the optimized run and the comparison were not")
    until(lambda: "w" in script.started)  # the waiting job joined this server's queue
    assert jobs.get("elsewhere").status == "running" and jobs.get("torn") is None
    script.gate("w").set()
    until(lambda: jobs.get("waiting").status == "done")


def test_executor_setting_is_checked_at_submit(tmp_path, monkeypatch):
    monkeypatch.setenv("OPLENS_EXECUTOR", "carrier-pigeon")
    with pytest.raises(OpLensError, match="^OPLENS_EXECUTOR='carrier-pigeon' is not an executor; use local or ray$"):
        JobManager(tmp_path).submit("mlp-tiny", ProfileConfig())
    monkeypatch.setenv("OPLENS_EXECUTOR", "ray")
    # a machine without Ray, whether or not this one has it: the import of ray fails, and the submit says what to do
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "profiler.jobs.ray_executor", raising=False)
    with pytest.raises(OpLensError, match=r"^OPLENS_EXECUTOR=ray needs Ray: pip install 'ray\[default\]'$"):
        JobManager(tmp_path).submit("mlp-tiny", ProfileConfig())
    assert JobManager(tmp_path).jobs() == []


def test_duration_text():
    assert [duration_text(s) for s in (0.2, 44.6, 125, 3780)] == ["0 s", "45 s", "2 min 5 s", "1 h 3 min"]
