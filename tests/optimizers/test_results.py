"""Applies and searches are kept as saved comparisons: the store round-trips them, `optimizers results` lists them,
and the worker's pass check gives the same table as checking in-process."""
import json
import subprocess
import sys
import time

import pytest

import profiler
from optimizers import results
from optimizers.base import applicability
from profiler import ModelLoadError, RunStoreError, store
from profiler.devices import resolve_device
from profiler.models.loading import reload_spec
from profiler.schema import Accuracy, Candidate, HeadToHead, SavedComparison, SearchResult
from testdata import in_process


def cli(*args):
    from optimizers.cli import main

    return in_process(main, *args)


def _search_record(loaded, config):
    acc = Accuracy(max_abs_err=1e-3, rel_err=1e-4, cosine=0.9999, top1_agreement=1.0, passed=True, kind="logits")
    board = [Candidate(passes=["dynamic-int8", "torch-compile"], median_ms=0.5, speedup=2.0, speedup_low=1.8,
                       speedup_high=2.2, accuracy=acc),
             Candidate(passes=["magnitude-prune"], status="inaccurate", reason="cosine 0.98 below 0.999")]
    found = SearchResult(base_median_ms=1.0, best=board[0], leaderboard=board, stopped="budget", elapsed_s=3.0,
                         vs_best_single=HeadToHead(passes=board[0].passes, single=["dynamic-int8"], speedup=1.3,
                                                   speedup_low=1.2, speedup_high=1.4, rounds=3),
                         base_run_id="base-run", best_run_id="best-run")
    return results.from_search(found, loaded, config)


def test_a_saved_comparison_round_trips_and_stays_out_of_the_run_listing(tmp_path, fast_config):
    loaded = profiler.load_model("mlp-tiny")
    record = results.keep(_search_record(loaded, fast_config), tmp_path)
    again = store.load_comparison(record.id, tmp_path)
    assert again == record and isinstance(again.search.leaderboard[0].accuracy, Accuracy)
    assert again.passes == ["dynamic-int8", "torch-compile"] and (again.speedup_low, again.speedup_high) == (1.8, 2.2)
    assert (again.base_run_id, again.optimized_run_id) == ("base-run", "best-run")
    assert SavedComparison.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert [c.id for c in store.list_comparisons(tmp_path)] == [record.id]
    # the comparisons folder is no run: listings, loading by that name and TensorBoard (no trace there) pass over it
    assert store.list_runs(tmp_path) == []
    with pytest.raises(RunStoreError):
        store.load("comparisons", tmp_path)
    assert not list((tmp_path / "comparisons").glob("*.pt.trace.json*"))
    (tmp_path / "comparisons" / "broken.json").write_text("{not json")
    listed = {c.id: c for c in store.list_comparisons(tmp_path)}
    assert listed["broken"].error and listed[record.id].error == ""
    store.delete_comparison(record.id, tmp_path)
    with pytest.raises(RunStoreError, match="no saved comparison"):
        store.load_comparison(record.id, tmp_path)


@pytest.mark.slow  # a real apply through the CLI: ~20 s
def test_results_lists_an_apply_and_prints_an_empty_list_for_none(tmp_path):
    r = cli("results", "--json", "--runs-dir", str(tmp_path / "empty"))
    assert r.returncode == 0 and json.loads(r.stdout) == []
    # a pass this CPU runs natively, so the test takes seconds on every kind (bf16 is emulated on AVX2-only CPUs)
    r = cli("apply", "bert-tiny", "--passes", "dynamic-int8", "--batch-size", "2", "--seq-len", "16", "--repeats", "3",
            "--min-time", "0", "--json", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    applied = json.loads(r.stdout)
    r = cli("results", "--json", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    [saved] = json.loads(r.stdout)
    assert saved["id"] == applied["comparison_id"] and saved["kind"] == "apply" and saved["passes"] == ["dynamic-int8"]
    assert saved["base_run_id"] == applied["base"]["run_id"]
    assert saved["optimized_run_id"] == applied["optimized"]["run_id"]
    assert saved["speedup_low"] <= saved["speedup"] <= saved["speedup_high"]
    assert saved["accuracy"]["passed"] and saved["config"]["batch_size"] == 2 and saved["config"]["seq_len"] == 16
    table = cli("results", "--runs-dir", str(tmp_path)).stdout
    assert saved["id"] in table and f"{saved['speedup']:.2f}x" in table and "pass" in table
    runs = json.loads(subprocess.run([sys.executable, "-m", "profiler", "runs", "--json", "--runs-dir", str(tmp_path)],
                                     capture_output=True, text=True).stdout)
    assert {x["id"] for x in runs} == {saved["base_run_id"], saved["optimized_run_id"]}  # no 'comparisons' run


@pytest.mark.slow  # ~9 s; the Optimize page test runs the check job in a worker too
def test_the_check_job_gives_the_in_process_table(tmp_path):
    from profiler.jobs import JobManager

    config = profiler.ProfileConfig(device="cpu", batch_size=2, seq_len=16)
    job = JobManager().submit("bert-tiny", config, str(tmp_path), kind="check")
    deadline = time.time() + 120
    while job.active and time.time() < deadline:
        time.sleep(0.1)
    assert job.status == "done", job.error
    here = applicability(profiler.load_model("bert-tiny", batch_size=2, seq_len=16), resolve_device("cpu"))
    assert job.result == here
    assert {"pass", "family", "applies", "why not", "emulated here", "description"} == set(here[0])


def test_a_saved_runs_model_is_found_again_or_refused_in_one_line(tiny_bert_run):
    run, _ = tiny_bert_run
    assert reload_spec(run.model, run.id) == ("bert-tiny", None)
    gone = profiler.ModelInfo(name="mine", source="file", parameters=1, spec="/tmp/oplens-uploads/00/mine.py:build")
    with pytest.raises(ModelLoadError, match="mine.py is gone"):
        reload_spec(gone, "r1")
    trace = profiler.ModelInfo(name="alexnet", source="trace", parameters=0, spec="alexnet_a100.pt.trace.json.gz")
    with pytest.raises(ModelLoadError, match="no model to load again"):
        reload_spec(trace, "r2")


def test_apply_from_a_saved_run_uses_its_model_and_config(tmp_path):
    config = profiler.ProfileConfig(batch_size=3, warmup=1, repeats=3, min_time_s=0.0, profile_iters=1, graph=False)
    run = profiler.profile(profiler.load_model("mlp-tiny", batch_size=3), config)
    store.save(run, tmp_path)
    r = cli("apply", "--from-run", run.id, "--passes", "dynamic-int8", "--json", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    saved = store.load_comparison(json.loads(r.stdout)["comparison_id"], tmp_path)
    assert saved.source_run_id == run.id and saved.spec == "mlp-tiny"
    assert saved.config.batch_size == 3 and saved.config.graph is False  # the run's config, not the CLI defaults
    r = cli("apply", "--passes", "dynamic-int8", "--runs-dir", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--from-run" in r.stderr
