"""python -m profiler as a user runs it: JSON contract, tables, and `error:` exits for bad input."""
import json
import subprocess
import sys

import pytest


def cli(*args, env_runs=None):
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=600)


def test_models_lists_the_registry():
    r = cli("models", "--json")
    assert r.returncode == 0
    names = {m["name"] for m in json.loads(r.stdout)}
    assert {"bert-base", "minilm", "bert-tiny", "resnet18"} <= names


def test_profile_json_contract_and_runs(tmp_path):
    r = cli("profile", "bert-tiny", "--batch-size", "2", "--seq-len", "16", "--repeats", "3", "--min-time", "0",
            "--json", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["config"]["batch_size"] == 2 and run["config"]["seq_len"] == 16
    for key in ["id", "model", "device", "config", "latency", "totals", "ops", "transfers", "graph", "trace_path"]:
        assert key in run
    assert {"name", "calls", "exec_ms", "trans_ms", "flops", "input_shapes"} <= set(run["ops"][0])
    assert {"direction", "calls", "bytes", "time_ms"} <= set(run["transfers"][0])
    assert {"id", "op", "module", "inputs", "exec_ms", "trans_ms"} <= set(run["graph"]["nodes"][0])
    listed = json.loads(cli("runs", "--json", "--runs-dir", str(tmp_path)).stdout)
    assert [x["id"] for x in listed] == [run["id"]]
    shown = cli("show", run["id"], "--runs-dir", str(tmp_path))
    assert shown.returncode == 0 and "Top operators of bert-tiny" in shown.stdout and "coverage" not in shown.stderr


def test_profile_table_shows_summary(tmp_path):
    r = cli("profile", "mlp-tiny", "--repeats", "3", "--min-time", "0", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for text in ["aten::addmm", "latency    median", "T_exec", "T_trans", "graph      torch.export", "trace"]:
        assert text in r.stdout


@pytest.mark.parametrize("args, message", [
    (["profile", "no-such-model"], "unknown model"),
    (["profile", "missing.pt"], "model file not found"),
    (["profile", "mlp-tiny", "--batch-size", "0"], "must be at least 1"),
    (["profile", "mlp-tiny", "--device", "tpu"], "device"),
    (["show", "nope"], "no saved run"),
    (["delete", "nope"], "no saved run"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_error_line(args, message, tmp_path):
    r = cli(*args, "--runs-dir", str(tmp_path)) if args[0] in ("profile", "show", "delete") else cli(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr
