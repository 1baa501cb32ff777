"""Bad input in the dashboard (AppTest on the Profile, Optimize and Runs pages, and the job layer they submit to):
each is refused or fails with one clear line on the page, never an exception or traceback on screen, never runs a
crafted pickle's command, and every run saved before still loads (the autouse `saved_runs` fixture checks it)."""
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from streamlit.testing.v1 import AppTest
from testdata import wait

from dashboard import state
from profiler import ProfileConfig, policy, store
from profiler.jobs import JobManager
from profiler.jobs import executors as jobs_module
from profiler.schema import TraceFormatError

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
FAST = dict(warmup=1, repeats=2, min_time_s=0.0, profile_iters=1, graph=False)


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    if page != "profile":
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    return at


def on_screen(at: AppTest) -> list[str]:
    """Everything the page says in error boxes; the page itself raised nothing."""
    assert not at.exception, [e.value for e in at.exception]
    shown = [str(e.value) for e in at.error]
    assert not any("Traceback" in s for s in shown)
    return shown


def one_line(at: AppTest, *needles: str) -> str:
    [message] = on_screen(at)
    assert "\n" not in message.strip(), message
    for n in needles:
        assert n in message, message
    return message



@pytest.fixture
def server(hostile, monkeypatch):
    """A dashboard whose data directory holds the hostile files; code not allowed (the default)."""
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(hostile.dir))
    monkeypatch.delenv("OPLENS_ALLOW_CODE", raising=False)
    return hostile


def profile_path(path: str, arch: str = "") -> AppTest:
    at = open_page("profile")
    at.radio(key="source").set_value("Path on this server").run()
    at.text_input(key="path").input(path).run()
    if arch:
        at.selectbox(key="arch_path").set_value(arch).run()
    return at


def refused_before_any_job(at: AppTest, *needles: str) -> None:
    one_line(at, *needles)
    at.button[0].click().run()  # pressing Profile anyway starts nothing
    assert "job_id" not in at.session_state
    one_line(at, *needles)


# ---------------------------------------------------------------- refused on the page, before anything is loaded

@pytest.mark.parametrize("path, needles", [
    ("/etc/hostname", ["this server reads model files only from"]),
    ("{dir}/../../../etc/hostname", ["this server reads model files only from"]),
    ("{dir}/models.py:nan", ["models.py is a Python file", "OPLENS_ALLOW_CODE=1"]),
    ("{dir}/evil.pkl", ["evil.pkl is a pickle", "OPLENS_ALLOW_CODE=1"]),
], ids=["absolute-path-outside", "dotdot-escape", "python-file-without-allow-code", "pickle-without-allow-code"])
def test_profile_page_refuses(path, needles, server, no_marker):
    refused_before_any_job(profile_path(path.format(dir=server.dir)), *needles)


def test_symlink_out_of_the_data_dir_is_refused(server, no_marker):
    link = server.dir / "innocent.pt"
    if not link.is_symlink():
        link.symlink_to("/etc/hostname")
    refused_before_any_job(profile_path(str(link)), "this server reads model files only from")


def test_hub_id_that_is_a_path_is_refused(server):
    at = open_page("profile")
    at.radio(key="source").set_value("Hugging Face Hub id").run()
    at.text_input(key="hub").input("../../etc").run()
    refused_before_any_job(at, "is not a Hugging Face Hub id")


def test_file_over_the_size_limit_is_refused(server, monkeypatch):
    monkeypatch.setenv("OPLENS_MAX_FILE_MB", "0.001")  # 1 KiB; the TorchScript file is bigger
    refused_before_any_job(profile_path(str(server.torchscript)), "over this server's limit of 0 MiB",
                           "OPLENS_MAX_FILE_MB")


def test_optimize_page_refuses_a_path_outside(server):
    at = open_page("optimize")
    at.radio(key="opt_source").set_value("Path on this server").run()
    at.text_input(key="opt_path").input("/etc/hostname").run()
    one_line(at, "this server reads model files only from")
    from dashboard.state import job_manager

    # the page stopped before submitting a check: the last one is still the first render's sample model
    assert job_manager().get(at.session_state["opt_check_job"]).spec == "bert-tiny"


def test_generate_page_refuses_code_in_the_server_process(server, no_marker):
    """The Generate page loads its model in the server itself: a .py there would run inside the server."""
    at = open_page("generate")
    at.text_input(key="gen_opt_model").input(f"{server.models_py}:nan")
    [go] = [b for b in at.button if b.label == "Optimize"]
    go.click().run()  # a form: the typed value and the submit go in the same run
    [mine] = [e for e in on_screen(at) if "models.py" in e]  # beside the page's note that mlp-tiny cannot generate
    assert "\n" not in mine and "is a Python file" in mine and "OPLENS_ALLOW_CODE=1" in mine


# ---------------------------------------------------------------- loaded in a worker: fails there, in one line

def test_pickled_state_dict_on_the_server_fails_without_running_it(server, no_marker):
    from dashboard.state import job_manager

    at = profile_path(str(server.state_dict), arch="mlp-tiny")
    at.button[0].click().run()
    wait(job_manager().get(at.session_state["job_id"]))
    at.run()
    one_line(at, "Profiling failed", "pickled Python objects (posix.system)", "never unpickles code")


def test_crafted_pt2_on_the_optimize_page_fails_without_running_it(server, no_marker):
    from dashboard.state import job_manager

    at = open_page("optimize")
    at.radio(key="opt_source").set_value("Path on this server").run()
    at.text_input(key="opt_path").input(str(server.pt2)).run()
    wait(job_manager().get(at.session_state["opt_check_job"]))
    at.run()
    one_line(at, "Cannot optimize this model", "not a torch.export .pt2 archive")


class Upload:
    """What st.file_uploader hands the page: a name chosen by the browser and the bytes."""

    def __init__(self, name: str, data: bytes):
        self.name, self._data = name, data

    def getbuffer(self):
        return memoryview(self._data)


def test_uploaded_pickle_stays_in_the_upload_folder_and_never_runs(server, no_marker, saved_runs):
    target = state.save_upload(Upload("../../../../tmp/evil_state.pt", server.state_dict.read_bytes()))
    assert policy.UPLOADS.resolve() in target.resolve().parents and target.name == "evil_state.pt"
    policy.check_server_model(str(target))  # a state dict is not code: accepted, and read weights-only
    job = wait(JobManager().submit(str(target), ProfileConfig(**FAST), str(saved_runs), arch="mlp-tiny"))
    assert job.status == "failed" and "pickled Python objects (posix.system)" in job.error
    assert "\n" not in job.error and "Traceback" not in job.error


def test_uploaded_python_file_is_refused_and_its_name_cannot_escape(server):
    target = state.save_upload(Upload("..\\..//.hidden model.py", b"import os\nos.system('false')\n"))
    assert policy.UPLOADS.resolve() in target.resolve().parents and target.name == "hidden_model.py"
    with pytest.raises(policy.PolicyError, match="hidden_model.py is a Python file"):
        policy.check_server_model(f"{target}:build")


def test_upload_over_the_size_limit_is_refused(server, monkeypatch):
    monkeypatch.setenv("OPLENS_MAX_FILE_MB", "0.001")
    with pytest.raises(policy.PolicyError, match="over this server's limit"):
        state.save_upload(Upload("big.pt", b"x" * 4096))


# ---------------------------------------------------------------- traces (what the Timeline page imports)

def test_traces_outside_truncated_or_oversized_are_one_line(server, monkeypatch, tmp_path):
    """What the server's import job says: the policy (outside, oversized) at its boundary, the reader's own words for
    a truncated file; each in one line."""
    import threading

    from profiler.jobs.worker import import_job
    from profiler.policy import PolicyError

    def as_job(path):
        return import_job({"paths": [str(path)]}, lambda *a: None, threading.Event())

    with pytest.raises(PolicyError, match="reads traces only from") as outside:
        as_job("/etc/hostname")
    real = (Path(__file__).resolve().parents[1] / "data" / "cpu_only.pt.trace.json.gz").read_bytes()
    cut = server.dir / "cut.pt.trace.json.gz"
    cut.write_bytes(real[: len(real) // 3])
    with pytest.raises(TraceFormatError) as truncated:
        as_job(cut)
    monkeypatch.setenv("OPLENS_MAX_FILE_MB", "0.001")
    whole = server.dir / "whole.pt.trace.json.gz"
    whole.write_bytes(real)
    with pytest.raises(PolicyError, match="over this server's limit") as big:
        as_job(whole)
    for e in (outside, truncated, big):
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------- the store and the job layer

def test_runs_page_skips_damaged_runs_with_a_note(saved_runs, template_store):
    first = sorted(template_store[1])[0]
    broken = saved_runs / "20260101-000000-mlp-tiny-broken"
    broken.mkdir()
    text = (saved_runs / first / "run.json").read_text()
    (broken / "run.json").write_text(text[: len(text) // 2])
    (saved_runs / "20260101-000001-mlp-tiny-empty").mkdir()
    (saved_runs / f"{store.PARTIAL}20260101-000002-mlp-tiny-abcdef").mkdir()
    at = open_page("runs")
    assert not on_screen(at)
    [note] = [w.value for w in at.warning if "damaged" in w.value]
    assert note.startswith("3 damaged runs skipped: ") and "broken" in note and "empty" in note
    assert set(at.dataframe[0].value["id"]) == set(template_store[1])  # never shown as valid
    for page in ("overview", "operators", "optimize"):
        assert not open_page(page).exception


def test_runs_page_refuses_a_label_that_is_not_one_line(saved_runs, template_store):
    at = open_page("runs")
    target = at.selectbox(key="manage_run").value
    at.text_input(key="new_label").input("bell\x07").run()
    at.button(key="rename").click().run()
    one_line(at, "a label is one line of at most 200 printable characters")
    assert store.load(target, saved_runs).label in ("", "baseline")


def _worker_of(runs_dir: Path) -> psutil.Process | None:
    """The worker process started for this test's job: the only one given this test's own runs dir."""
    for child in psutil.Process().children(recursive=True):
        try:
            if "profiler.jobs" in child.cmdline() and any(f'"runs_dir": "{runs_dir}"' in p for p in child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_job_killed_mid_run_fails_in_one_line_and_saves_nothing(saved_runs):
    jobs = JobManager()
    job = jobs.submit("bert-tiny", ProfileConfig(warmup=1, repeats=10_000, min_time_s=60, graph=False),
                      str(saved_runs))
    try:
        deadline = time.time() + 60
        while job.fraction == 0 and job.active and time.time() < deadline:  # measuring, not loading
            time.sleep(0.1)
        worker = _worker_of(saved_runs)
        assert worker is not None and job.active
        os.kill(worker.pid, signal.SIGKILL)
        wait(job, timeout=30)
    finally:
        jobs.cancel(job.id)  # whatever failed above, no worker is left measuring for a minute
    assert job.status == "failed" and job.error.startswith("the profile process died (it was killed")
    assert "\n" not in job.error and "nothing was saved" in job.error
    assert not store.scan_runs(saved_runs).skipped  # no half-written run either


def test_hanging_model_is_cancelled_after_a_short_timeout(hostile, saved_runs, template_store, monkeypatch):
    monkeypatch.setenv("OPLENS_ALLOW_CODE", "1")  # a .py model: only on a server started to allow code
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(hostile.dir))
    monkeypatch.setattr(jobs_module, "GRACE_S", 1.0)
    jobs = JobManager()
    job = jobs.submit(f"{hostile.models_py}:hang", ProfileConfig(**FAST), str(saved_runs))
    deadline = time.time() + 60
    while job.stage in ("starting", "starting a worker process", "loading the model") and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the short timeout: its forward never returns
    assert job.active
    worker = _worker_of(saved_runs)
    started = time.time()
    jobs.cancel(job.id)
    wait(job, timeout=30)
    assert job.status == "cancelled" and time.time() - started < 15
    assert worker is not None and not worker.is_running()
    assert {r.id for r in store.list_runs(saved_runs)} == set(template_store[1])  # nothing saved
