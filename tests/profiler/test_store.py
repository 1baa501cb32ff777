import gzip
import json
import re
from pathlib import Path

import pytest

from profiler import RunStoreError, store
from profiler.schema import SCHEMA_VERSION, ProfileRun


def test_round_trip_is_lossless(tiny_bert_run):
    run, root = tiny_bert_run
    loaded = store.load(run.id, root)
    assert loaded.to_dict() == run.to_dict()
    again = ProfileRun.from_dict(json.loads(json.dumps(run.to_dict())))
    assert again == run


def test_layout_is_a_tensorboard_logdir(tiny_bert_run):
    run, root = tiny_bert_run
    d = Path(root) / run.id
    assert (d / "run.json").is_file()
    trace = Path(run.trace_path)
    assert trace.parent == d.resolve()
    assert re.fullmatch(r".+_\d+\.\d+\.pt\.trace\.json\.gz", trace.name)
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    names = {e.get("name") for e in events}
    assert "aten::addmm" in names and any(str(n).startswith("ProfilerStep#") for n in names)
    saved = json.loads((d / "run.json").read_text())
    assert saved["trace_path"] == trace.name and saved["schema_version"] == SCHEMA_VERSION


def test_list_rename_delete(tiny_bert_run, tmp_path):
    run, _ = tiny_bert_run
    store.save(run, tmp_path)
    [summary] = store.list_runs(tmp_path)
    assert summary.id == run.id and summary.model == "bert-tiny" and summary.median_ms == run.latency.median_ms
    store.rename(run.id, "  baseline  ", tmp_path)
    assert store.load(run.id, tmp_path).label == "baseline"
    assert not list(Path(tmp_path, run.id).glob("*.tmp")), "atomic write leaves no temp files"
    store.delete(run.id, tmp_path)
    assert store.list_runs(tmp_path) == []
    with pytest.raises(RunStoreError, match="no saved run"):
        store.load(run.id, tmp_path)


def test_damaged_and_future_runs_are_skipped_with_a_note(tiny_bert_run, tmp_path):
    run, _ = tiny_bert_run
    store.save(run, tmp_path)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "run.json").write_text('{"id": "broken", "latency": ')
    future = tmp_path / "future"
    future.mkdir()
    data = run.to_dict() | {"id": "future", "schema_version": SCHEMA_VERSION + 1}
    (future / "run.json").write_text(json.dumps(data))
    listing = store.scan_runs(tmp_path)
    assert [r.id for r in listing.runs] == [run.id]  # never listed as if valid
    assert listing.note.startswith("2 damaged runs skipped: ")
    assert any("'broken'" in n and "truncated" in n for n in listing.skipped)
    assert any("'future'" in n and "newer OpLens" in n for n in listing.skipped)
    assert store.list_runs(tmp_path) == listing.runs
    with pytest.raises(RunStoreError, match="newer OpLens"):
        store.load("future", tmp_path)
    with pytest.raises(RunStoreError, match="unreadable"):
        store.load("broken", tmp_path)
    store.delete("broken", tmp_path)  # a damaged run can still be cleared away
    assert len(store.scan_runs(tmp_path).skipped) == 1


def test_interrupted_saves_are_reported_never_listed(tiny_bert_run, tmp_path):
    run, _ = tiny_bert_run
    store.save(run, tmp_path)
    (tmp_path / "20260101-000000-mlp-abc123").mkdir()  # a run folder whose run.json never came
    (tmp_path / f"{store.PARTIAL}20260101-000001-mlp-def456-x1y2").mkdir()  # a staging folder never renamed
    listing = store.scan_runs(tmp_path)
    assert [r.id for r in listing.runs] == [run.id]
    assert listing.note.startswith("2 damaged runs skipped: ")
    assert any("no run.json" in n for n in listing.skipped)
    assert any("interrupted save" in n and store.PARTIAL in n for n in listing.skipped)
    assert store.load(run.id, tmp_path).latency.median_ms == run.latency.median_ms


def test_a_new_run_appears_whole_or_not_at_all(tiny_bert_run, tmp_path, monkeypatch):
    run, _ = tiny_bert_run
    seen = []
    real = store.os.fsync

    def sync_and_look(fd):  # what a reader sees at each step of the save (the trace, run.json, the folder)
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        real(fd)
    monkeypatch.setattr(store.os, "fsync", sync_and_look)
    copy = ProfileRun.from_dict(run.to_dict())
    copy.id = "20260101-000000-bert-tiny-aaaaaa"
    store.save(copy, tmp_path)
    *during, after_rename = seen  # the last fsync is of the runs dir, after the rename
    assert during and all(n.startswith(store.PARTIAL) for names in during for n in names)  # only the .saving- folder
    assert after_rename == [copy.id]
    assert sorted(p.name for p in tmp_path.iterdir()) == [copy.id]
    assert Path(store.load(copy.id, tmp_path).trace_path).is_file()


def test_trace_path_cannot_leave_the_run_folder(tiny_bert_run, tmp_path):
    run, _ = tiny_bert_run
    d = store.save(run, tmp_path)
    data = json.loads((d / "run.json").read_text())
    for evil in ["../../../etc/passwd", "/etc/passwd"]:
        (d / "run.json").write_text(json.dumps(data | {"trace_path": evil}))
        with pytest.raises(RunStoreError, match="leads out of the run's folder"):
            store.load(run.id, tmp_path)
        assert store.list_runs(tmp_path) == []


def test_labels_are_one_printable_line(tiny_bert_run, tmp_path):
    run, _ = tiny_bert_run
    store.save(run, tmp_path)
    for bad in ["two\nlines", "x" * 201, "bell\x07"]:
        with pytest.raises(RunStoreError, match="one line of at most 200"):
            store.rename(run.id, bad, tmp_path)
    assert store.rename(run.id, "../../etc/passwd", tmp_path).label == "../../etc/passwd"  # only ever displayed
    assert sorted(p.name for p in tmp_path.iterdir()) == [run.id]


def test_invalid_run_ids_cannot_escape_the_store(tmp_path):
    (tmp_path / "secret").write_text("x")
    for bad in ["../etc", "", ".hidden", "a/b", "/etc", "..", "a\\b", "x\0y", "comparisons", "sweeps", None]:
        for action in (store.load, store.delete):
            with pytest.raises(RunStoreError, match="invalid run id"):
                action(bad, tmp_path)
        with pytest.raises(RunStoreError, match="invalid run id"):
            store.rename(bad, "label", tmp_path)
    assert (tmp_path / "secret").read_text() == "x"


def test_runs_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path / "env"))
    assert store.runs_dir() == tmp_path / "env"
    assert store.runs_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("OPLENS_RUNS_DIR")
    assert store.runs_dir() == Path("runs")


def test_saving_into_a_second_store_copies_the_trace(tiny_bert_run, tmp_path):
    run, root = tiny_bert_run
    original = run.trace_path
    store.save(run, tmp_path / "other")
    assert run.trace_path == original and Path(original).is_file()
    copy = store.load(run.id, tmp_path / "other")
    assert Path(copy.trace_path).is_file() and Path(copy.trace_path) != Path(original)


def test_from_dict_follows_the_type_hints_into_every_nested_dataclass():
    from profiler.schema import Accuracy, Comparison, OpDiff, OptimizeResult, PassResult

    comp = Comparison("a", "b", 2.0, 1.5, 2.5, 10.0, 5.0, True, ops=[OpDiff("aten::mm", "faster", 4.0, 2.0, -2.0, 2.0)])
    result = OptimizeResult(passes=[PassResult("bf16", True)], base_run_id="a", optimized_run_id="b", comparison=comp,
                            accuracy=Accuracy(0.1, 0.01, 0.999, None, True))
    back = OptimizeResult.from_dict(result.to_dict())
    assert back == result
    assert isinstance(back.passes[0], PassResult) and isinstance(back.comparison.ops[0], OpDiff)
    assert isinstance(back.accuracy, Accuracy)


def test_search_result_round_trips_typed():
    from optimizers.search import Candidate, HeadToHead, SearchResult
    from profiler.schema import Accuracy

    best = Candidate(["bf16"], 5.0, 2.0, accuracy=Accuracy(0.1, 0.01, 0.999, None, True))
    result = SearchResult(10.0, best, [best], "done", 3.0, HeadToHead(["a", "b"], ["a"], 1.3, 1.2, 1.4, 3))
    back = SearchResult.from_dict(result.to_dict())
    assert back == result  # before: nested candidates and the head-to-head came back as plain dicts
    assert isinstance(back.leaderboard[0].accuracy, Accuracy) and isinstance(back.vs_best_single, HeadToHead)


KILLED_MID_WRITE = """
import json, sys, time
from profiler import store
from profiler.schema import ProfileRun

def stop_here(fd):  # bytes written, not yet synced or renamed: SIGKILL lands here, as a crash or the OOM killer would
    print("half written", flush=True)
    time.sleep(120)

store.os.fsync = stop_here
root, what, run_file = sys.argv[1:]
if what == "save":
    store.save(ProfileRun.from_dict(json.load(open(run_file))), root)
else:
    store.rename(what, "renamed", root)
"""


def _kill_mid_write(root, what, run_file=""):
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_WRITE, str(root), what, str(run_file)],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout.readline().strip() == "half written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def test_kill_9_in_the_middle_of_a_save_loses_nothing(tiny_bert_run, tmp_path):
    run, _ = tiny_bert_run
    root = tmp_path / "runs"
    store.save(run, root)
    store.rename(run.id, "before", root)
    new = run.to_dict() | {"id": "20260101-000000-bert-tiny-killed"}
    (tmp_path / "new.json").write_text(json.dumps(new))
    _kill_mid_write(root, "save", tmp_path / "new.json")  # a new run, killed while writing run.json
    _kill_mid_write(root, run.id, "")  # a label change of the saved run, killed the same way
    listing = store.scan_runs(root)
    assert [r.id for r in listing.runs] == [run.id]  # the half-written run is never shown as valid
    assert listing.note.startswith("1 damaged run skipped: .saving-20260101-000000-bert-tiny-killed")
    kept = store.load(run.id, root)
    assert kept.label == "before" and kept.latency.median_ms == run.latency.median_ms
    with pytest.raises(RunStoreError, match="no saved run"):
        store.load(new["id"], root)
