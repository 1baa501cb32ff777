import dataclasses
import json
import time

from torch import nn

import profiler
from optimizers import base
from optimizers.search import search
from testdata import in_process


class Sleepy(nn.Module):
    """A stand-in model that takes `ms` longer than the one it wraps, with the same outputs."""

    def __init__(self, inner, ms):
        super().__init__()
        self.inner, self.ms = inner, ms

    def forward(self, *args, **kwargs):
        time.sleep(self.ms / 1000)
        return self.inner(*args, **kwargs)


def _half(monkeypatch):
    monkeypatch.setitem(base.REGISTRY, "half", base.Pass(
        "half", "runtime", "stand-in: sleeps half as long as the model it is given", ("cpu",),
        lambda lm, d: base.outcome(lm, Sleepy(lm.module.inner, lm.module.ms / 2))))
    loaded = profiler.load_model("mlp-tiny")
    return dataclasses.replace(loaded, module=Sleepy(loaded.module, 12))


def cli(*args):
    from optimizers.cli import main

    return in_process(main, *args)


def test_list_json():
    passes = json.loads(cli("list", "--json").stdout)
    names = {p["name"] for p in passes}
    assert {"torch-compile", "torchscript-freeze", "conv-bn-fold", "sdpa", "bf16", "fp16", "autocast", "dynamic-int8",
            "accuracy-int8", "static-int8", "weight-only-int8", "magnitude-prune", "structured-prune", "lowrank-svd",
            "channels-last", "pinned-memory", "resident-inputs", "threads", "cuda-graphs", "sparsity-2to4"} <= names


def test_apply_json_saves_both_runs(tmp_path):
    r = cli("apply", "cnn-tiny", "--passes", "conv-bn-fold,pinned-memory", "--repeats", "3", "--min-time", "0",
            "--json", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [p["applied"] for p in out["passes"]] == [True, False]
    assert "cuda only" in out["passes"][1]["reason"]
    assert out["accuracy"]["passed"] and out["accuracy"]["max_abs_err"] < 1e-4
    assert out["speedup_low"] <= out["speedup"] <= out["speedup_high"]
    assert out["graph_diff"].get("aten::batch_norm", [0, 0])[1] == 0  # BatchNorm nodes gone from the graph
    saved = {s.id for s in profiler.store.list_runs(tmp_path)}
    assert saved == {out["base"]["run_id"], out["optimized"]["run_id"]}


def test_apply_bad_input_exits_2():
    for args, message in [(["--passes", "warp-drive"], "unknown pass 'warp-drive'"),
                          (["--passes", "bf16,autocast"], "choose one")]:
        r = cli("apply", "mlp-tiny", *args, "--json")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert message in [line for line in r.stderr.splitlines() if line.startswith("error:")][0]


def test_search_builds_a_leaderboard_and_respects_the_budget():
    loaded = profiler.load_model("mlp-tiny")
    config = profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0)
    result = search(loaded, config, budget_s=30, passes=["magnitude-prune", "dynamic-int8", "structured-prune"])
    board = {tuple(c.passes): c for c in result.leaderboard}
    assert board[("magnitude-prune",)].status == "inaccurate"  # outside the tolerance: pruned from the search
    assert board[("magnitude-prune",)].accuracy.cosine < 0.999
    assert board[("dynamic-int8",)].status == "ok" and board[("dynamic-int8",)].accuracy.passed
    # whether int8 is faster on this machine varies; what the search makes of it does not
    fastest = max((c for c in result.leaderboard if c.status == "ok"), key=lambda c: c.speedup)
    if fastest.speedup > 1.0:
        assert result.best is fastest and result.best.accuracy.passed
    else:  # keeping the model as it is wins
        assert (result.best.passes, result.best.speedup, result.best.median_ms) == ([], 1.0, result.base_median_ms)
    assert result.elapsed_s < 30 + 20  # stops at the budget (plus the candidate in flight)
    if len(result.leaderboard) < 3:
        assert result.stopped == "time budget of 30 s reached"
    elif fastest.speedup > 1.02:  # the one accurate pass has no partner left: round two has nothing to try
        assert result.stopped == "every compatible pipeline was tried"
    else:
        assert result.stopped == "no single pass beat the unoptimized model by 2%"


def test_a_search_where_every_pass_is_slower_keeps_the_model_as_it_is(monkeypatch):
    monkeypatch.setitem(base.REGISTRY, "slower", base.Pass(
        "slower", "runtime", "stand-in: the model plus a 5 ms sleep, same outputs", ("cpu",),
        lambda lm, d: base.outcome(lm, Sleepy(lm.module, 5))))
    result = search(profiler.load_model("mlp-tiny"), profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0),
                    budget_s=30, passes=["slower"])
    [tried] = result.leaderboard
    assert tried.status == "ok" and tried.speedup < 0.5
    assert (result.best.passes, result.best.speedup, result.best.median_ms) == ([], 1.0, result.base_median_ms)
    assert result.best.reason == "no pipeline beat the unoptimized model"
    assert result.stopped == "no single pass beat the unoptimized model by 2%"


def test_a_candidate_that_breaks_is_recorded_not_fatal(monkeypatch):
    import importlib

    search_mod = importlib.import_module("optimizers.search")  # the module, not the face's search()

    real = search_mod.held_out_accuracy

    def flaky(reference, model, *args, **kwargs):
        if "Autocast" in type(model.module).__name__:
            raise RuntimeError("expected scalar type Float but found BFloat16")
        return real(reference, model, *args, **kwargs)

    monkeypatch.setattr(search_mod, "held_out_accuracy", flaky)
    result = search(profiler.load_model("mlp-tiny"), profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0),
                    budget_s=20, passes=["autocast", "magnitude-prune"])
    failed = {tuple(c.passes): c for c in result.leaderboard}[("autocast",)]
    assert failed.status == "failed" and "BFloat16" in failed.reason


def test_quantization_refuses_autocast_models():
    from optimizers import apply_pipeline
    from profiler.devices import resolve_device

    _, results = apply_pipeline(profiler.load_model("mlp-tiny"), ["autocast", "dynamic-int8"], resolve_device("cpu"))
    assert results[0].applied and not results[1].applied and "float32 activations" in results[1].reason


def test_a_pass_that_pays_off_with_a_partner_is_tried_with_it(monkeypatch):
    """static int8 alone is slower than fp32 and only fast once torch-compile lowers it; a plain beam would drop
    it after round one. Here a stand-in pair: 'slow-alone' wraps the model in a sleep, 'unwrap' removes it."""

    slow = base.Pass("slow-alone", "runtime", "stand-in: slower alone, fast with its partner", ("cpu",),
                     lambda lm, d: base.outcome(lm, Sleepy(lm.module, 3)), pays_off_with=("unwrap",))
    unwrap = base.Pass("unwrap", "runtime", "stand-in: the partner that makes it fast", ("cpu",),
                       lambda lm, d: base.outcome(lm, lm.module.inner),
                       lambda lm, d: None if isinstance(lm.module, Sleepy) else "nothing to unwrap")
    monkeypatch.setitem(base.REGISTRY, "slow-alone", slow)
    monkeypatch.setitem(base.REGISTRY, "unwrap", unwrap)
    result = search(profiler.load_model("mlp-tiny"), profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0),
                    budget_s=60, passes=["slow-alone", "unwrap"])
    board = {tuple(c.passes): c for c in result.leaderboard}
    assert board[("slow-alone",)].status == "ok" and board[("slow-alone",)].speedup < 0.9
    assert board[("slow-alone", "unwrap")].status == "ok"
    assert board[("slow-alone", "unwrap")].speedup > 2 * board[("slow-alone",)].speedup


def test_search_times_the_winning_pipeline_against_the_best_single_in_alternation(monkeypatch):
    """A two-pass winner is re-timed against the best single pass, ABBA; a 3 ms sleep removed shows as > 1.5x."""

    loaded = _half(monkeypatch)
    monkeypatch.setitem(base.REGISTRY, "quarter", base.REGISTRY["half"])  # the same halving, a second time
    result = search(loaded, profiler.ProfileConfig(warmup=1, repeats=5, min_time_s=0), budget_s=60,
                    passes=["half", "quarter"])
    h = result.vs_best_single
    assert result.best.passes in (["half", "quarter"], ["quarter", "half"])
    assert h is not None and h.passes == result.best.passes and len(h.single) == 1
    assert 1.5 < h.speedup < 2.5 and h.speedup_low <= h.speedup <= h.speedup_high  # 6 ms vs 3 ms of sleep


def test_the_search_inserts_a_pass_where_its_kind_belongs():
    from optimizers.search import grow

    assert grow(["static-int8", "torch-compile"], "bf16-attention") == [
        "bf16-attention",
        "static-int8",
        "torch-compile",
    ]
    assert grow(["dynamic-int8"], "structured-prune") == ["structured-prune", "dynamic-int8"]
    assert grow(["bf16"], "torch-compile") == ["bf16", "torch-compile"]


def test_a_pass_that_fails_alone_is_left_out_of_longer_pipelines(monkeypatch):
    result = search(_half(monkeypatch), profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0), budget_s=60,
                    passes=["half", "magnitude-prune"])
    board = {tuple(c.passes): c for c in result.leaderboard}
    assert board[("half",)].status == "ok" and board[("magnitude-prune",)].status == "inaccurate"
    assert all(len(c.passes) == 1 for c in result.leaderboard), list(board)
    assert result.stopped == "every compatible pipeline was tried"


def test_a_search_leaves_no_trace_folders_behind_and_keeps_the_saved_runs_traces(monkeypatch, tmp_path):
    """Each candidate's profile writes its trace to a temporary oplens-trace-* folder; only the two saved runs
    (base and winner) keep theirs, in the store. One search used to leave 22 such folders."""
    import tempfile

    from profiler import store
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setitem(base.REGISTRY, "slower", base.Pass(
        "slower", "runtime", "stand-in: the model plus a 5 ms sleep, same outputs", ("cpu",),
        lambda lm, d: base.outcome(lm, Sleepy(lm.module, 5))))
    result = search(profiler.load_model("mlp-tiny"), profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0),
                    budget_s=30, passes=["slower", "magnitude-prune"], save_runs=True, runs_dir=str(tmp_path / "runs"))
    assert len(result.leaderboard) >= 2
    assert [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith(store.TRACE_PREFIX)] == []
    saved = store.load(result.base_run_id, tmp_path / "runs")
    assert saved.trace_path and (tmp_path / "runs") in __import__("pathlib").Path(saved.trace_path).parents
