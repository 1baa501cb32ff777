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


def test_damaged_and_future_runs_are_reported_not_hidden(tiny_bert_run, tmp_path):
    run, _ = tiny_bert_run
    store.save(run, tmp_path)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "run.json").write_text('{"id": "broken", "latency": ')
    future = tmp_path / "future"
    future.mkdir()
    data = run.to_dict() | {"id": "future", "schema_version": SCHEMA_VERSION + 1}
    (future / "run.json").write_text(json.dumps(data))
    runs = {r.id: r for r in store.list_runs(tmp_path)}
    assert runs[run.id].error == ""
    assert "unreadable" not in runs["broken"].error and runs["broken"].error
    assert "newer OpLens" in runs["future"].error
    with pytest.raises(RunStoreError, match="newer OpLens"):
        store.load("future", tmp_path)
    with pytest.raises(RunStoreError, match="unreadable"):
        store.load("broken", tmp_path)


def test_invalid_run_ids_cannot_escape_the_store(tmp_path):
    for bad in ["../etc", "", ".hidden", "a/b"]:
        with pytest.raises(RunStoreError):
            store.load(bad, tmp_path)


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
