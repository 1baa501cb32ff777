"""The trace reader on real traces recorded elsewhere (figures from the traces' README) and on broken files."""
import gzip
import json

import pytest
from testdata import DATA

from profiler import TraceFormatError
from profiler.traces.read import default_categories, read_trace, steps, summary, window


def test_alexnet_a100_figures():
    s = summary(read_trace(DATA / "alexnet_a100.pt.trace.json.gz"))
    cats = s["categories"]
    assert cats["cpu_op"]["count"] == 359
    assert cats["kernel"]["count"] == 79 and cats["kernel"]["dur_us"] == pytest.approx(10_692, abs=1)
    assert s["memcpy"]["H2D"] == {"calls": 16, "bytes": 244_403_360, "dur_us": pytest.approx(55_503, abs=1)}


def test_training_rank_has_all_three_directions():
    s = summary(read_trace(DATA / "sampled_rank0_gpu.pt.trace.json.gz"))
    assert s["categories"]["cpu_op"]["count"] == 2329
    assert s["categories"]["kernel"]["count"] == 1154
    assert s["categories"]["kernel"]["dur_us"] == pytest.approx(606_519, abs=1)
    m = s["memcpy"]
    assert (m["H2D"]["calls"], m["D2H"]["calls"], m["D2D"]["calls"]) == (24, 8, 8)
    assert m["H2D"]["dur_us"] == pytest.approx(877, abs=1)


def test_old_tensorboard_plugin_categories_are_normalised():
    s = summary(read_trace(DATA / "resnet50_train_gpu.pt.trace.json.gz"))
    assert s["categories"]["cpu_op"]["count"] == 23_646  # "Operator" in the file
    assert s["categories"]["kernel"]["count"] == 8772  # "Kernel"
    assert s["categories"]["kernel"]["dur_us"] == pytest.approx(591_532, abs=1)
    assert s["memcpy"]["H2D"]["calls"] == 12 and s["memcpy"]["H2D"]["dur_us"] == pytest.approx(11_492, abs=1)


def test_cpu_only_trace():
    t = read_trace(DATA / "cpu_only.pt.trace.json.gz")
    s = summary(t)
    assert s["categories"]["cpu_op"]["count"] == 4 and s["memcpy"] == {}


def test_plain_json_and_steps(tmp_path):
    """A plain .json training trace with two ProfilerStep windows: each window holds exactly the events that start
    inside it, counted here straight from the file's complete events (2,402 and 2,406 of 4,811)."""
    raw = gzip.decompress((DATA / "sampled_rank0_gpu.pt.trace.json.gz").read_bytes())
    plain = tmp_path / "t.pt.trace.json"
    plain.write_bytes(raw)
    t = read_trace(plain)
    complete = [e for e in json.loads(raw)["traceEvents"] if e.get("ph") == "X"]
    assert len(t.events) == len(complete) == 4811
    marks = steps(t)
    assert [m.name for m in marks] == ["ProfilerStep#551", "ProfilerStep#552"]
    for i, m in enumerate(marks):
        inside = window(t, i)
        expected = [e for e in complete if m.ts_us <= e["ts"] <= m.end_us and not e["name"].startswith("ProfilerStep")]
        assert len(inside) == len(expected) == [2402, 2406][i]
        assert all(m.ts_us <= e.ts_us <= m.end_us for e in inside)
    assert not {id(e) for e in window(t, 0)} & {id(e) for e in window(t, 1)}


def test_a_trace_without_steps_windows_its_work():
    """No ProfilerStep in AlexNet's trace: the window is the stretch from the first to the last op or device event."""
    t = read_trace(DATA / "alexnet_a100.pt.trace.json.gz")
    assert steps(t) == []
    work = [e for e in t.events if e.cat in ("cpu_op", "kernel", "gpu_memcpy", "gpu_memset", "cuda_runtime")]
    lo, hi = min(e.ts_us for e in work), max(e.end_us for e in work)
    inside = window(t, 0)
    assert len(inside) == sum(lo <= e.ts_us <= hi for e in t.events) == 866  # of 868: two job-long annotations out
    assert len(window(t, 0, max_events=10)) == 10


@pytest.mark.parametrize("content, message", [
    (lambda raw: gzip.compress(raw)[: len(gzip.compress(raw)) // 2], "truncated or corrupt"),
    (lambda raw: raw[: len(raw) // 2], "not valid JSON, perhaps truncated"),
    (lambda raw: json.dumps({"events": []}).encode(), "no traceEvents"),
    (lambda raw: b"\x00\x01binary", "not valid JSON"),
])
def test_broken_traces_are_named(tmp_path, content, message):
    raw = gzip.decompress((DATA / "cpu_only.pt.trace.json.gz").read_bytes())
    f = tmp_path / "broken.pt.trace.json.gz"
    f.write_bytes(content(raw))
    with pytest.raises(TraceFormatError, match=message):
        read_trace(f)


def test_missing_trace():
    with pytest.raises(TraceFormatError, match="not found"):
        read_trace("nope.json")


def test_default_categories_leave_out_job_long_annotations():
    """BERT-small on an H100 has all four kinds of annotation; ops, kernels, runtime calls and copies stay."""
    t = read_trace(DATA / "h100_bert_small.pt.trace.json.gz")
    assert default_categories(t) == ["cpu_op", "cuda_runtime", "gpu_memcpy", "kernel"]
def test_merge_sessions_makes_one_step_per_session(tmp_path):
    from profiler.traces.read import merge_sessions

    def session(base_ns, ts):
        return {"schemaVersion": 1, "baseTimeNanoseconds": base_ns, "traceEvents": [
            {"ph": "M", "name": "process_name", "pid": 1, "tid": 0, "args": {"name": "python"}},
            {"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#1", "ts": ts, "dur": 10, "pid": 1, "tid": 1},
            {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": ts + 1, "dur": 5, "pid": 1, "tid": 1}]}

    paths = []
    for i, (base, ts) in enumerate([(1_000_000_000, 100.0), (2_000_000_000, 50.0)]):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(session(base, ts)))
    merged = merge_sessions(paths, tmp_path / "w.1.pt.trace.json.gz")
    trace = read_trace(merged)
    marks = steps(trace)
    assert [m.name for m in marks] == ["ProfilerStep#1", "ProfilerStep#2"]
    # the second session's clock starts one second later: its events move onto the first session's clock
    assert [m.ts_us for m in marks] == [100.0, 1_000_050.0]
    assert [e.ts_us for e in trace.of("cpu_op")] == [101.0, 1_000_051.0]
    with gzip.open(merged, "rt") as f:
        raw = json.load(f)
    assert raw["baseTimeNanoseconds"] == 1_000_000_000
    assert sum(e["ph"] == "M" for e in raw["traceEvents"]) == 1
