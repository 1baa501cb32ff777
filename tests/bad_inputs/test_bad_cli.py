"""Bad input at the command line: each gets one `error:` line (or, where the input is usable but suspect, a clear
warning), never a traceback, never runs a crafted pickle's command, and leaves every saved run loadable.

Each case calls the command line's `main` in this process (a new Python with torch for each of thirty cases costs
minutes on a shared two-core machine); SUBPROCESS runs a few of them again exactly as a person types them,
`python -m profiler ...` / `python -m optimizers ...`, entry point, exit code and quiet stderr included."""
import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from profiler import store

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--repeats", "2", "--warmup", "1", "--min-time", "0", "--profile-iters", "1", "--no-graph"]
FAST_OPT = ["--repeats", "2", "--warmup", "1", "--min-time", "0"]


def _corrupt(root):
    """A run killed mid-write: a truncated run.json, and a run folder whose run.json never came."""
    first = sorted(p for p in root.iterdir())[0]
    broken = root / "20260101-000000-mlp-tiny-broken"
    shutil.copytree(first, broken)
    text = (broken / "run.json").read_text()
    (broken / "run.json").write_text(text[: len(text) // 2])
    (root / "20260101-000001-mlp-tiny-empty").mkdir()


# id: (module, args, setup of the case's runs dir, what stderr's one error line must say; None: exit 0)
CASES = {
    "pickle-state-dict": ("profiler", ["profile", "{h.state_dict}", "--arch", "mlp-tiny", *FAST], None,
                          ["pickled Python objects (posix.system)", "never unpickles code"]),
    "pickle-pkl": ("profiler", ["profile", "{h.pkl}", "--arch", "mlp-tiny", *FAST], None,
                   ["pickled Python objects", "never unpickles code"]),
    "pickle-in-pt2": ("profiler", ["profile", "{h.pt2}", *FAST], None, ["not a torch.export .pt2 archive"]),
    "pickle-as-inputs": ("profiler", ["profile", "{h.torchscript}", "--inputs", "{h.state_dict}", *FAST], None,
                         ["pickled Python objects (posix.system)"]),
    "pickle-as-sidecar-inputs": ("profiler", ["profile", "{h.torchscript}", *FAST], None,
                                 ["good_script.inputs.pt", "pickled Python objects"]),
    "pickle-in-hf-dir": ("profiler", ["profile", "{h.hf_dir}", *FAST], None, ["weights could not be loaded"]),
    "whole-module-pickle": ("profiler", ["profile", "{h.whole_module}", "--arch", "mlp-tiny", *FAST], None,
                            ["pickled Python objects (torch.nn.modules.linear.Linear)"]),
    "truncated-torchscript": ("profiler", ["profile", "{truncated_ts}", *FAST], None, ["not a"]),
    "random-bytes-model": ("profiler", ["profile", "{garbage}", "--arch", "mlp-tiny", *FAST], None,
                           ["not a model file"]),
    "empty-model-file": ("profiler", ["profile", "{empty}", "--arch", "mlp-tiny", *FAST], None, ["not a model file"]),
    "wrong-input-shape": ("profiler", ["profile", "{h.models_py}:wrong_shape", *FAST], None,
                          ["rejected its inputs", "shapes cannot be multiplied"]),
    "wrong-input-dtype": ("profiler", ["profile", "{h.models_py}:wrong_dtype", *FAST], None,
                          ["rejected its inputs", "dtype"]),
    "nan-output": ("profiler", ["profile", "{h.models_py}:nan", *FAST], None, None),
    "zero-batch": ("profiler", ["profile", "mlp-tiny", "--batch-size", "0", *FAST], None,
                   ["--batch-size", "at least 1"]),
    "negative-batch": ("profiler", ["profile", "mlp-tiny", "--batch-size", "-3", *FAST], None, ["at least 1"]),
    "absurd-seq-len": ("profiler", ["profile", "bert-tiny", "--seq-len", "1000000000", *FAST], None,
                       ["--seq-len", "at most 65536"]),
    "absurd-sweep-lengths": ("profiler", ["sweep", "mlp-tiny", "--batch-sizes", "1", "--seq-lens", "8,100000000"],
                             None, ["--seq-lens", "at most 65536"]),
    "absurd-prompt-len": ("profiler", ["generate", "llama-tiny", "--prompt-len", "999999999"], None,
                          ["--prompt-len", "at most 65536"]),
    "repeats-not-a-number": ("profiler", ["profile", "mlp-tiny", "--repeats", "many"], None, ["not a number"]),
    "truncated-trace": ("profiler", ["import", "{truncated_trace}"], None, ["truncated_trace"]),
    "non-trace-json": ("profiler", ["import", "{not_a_trace}"], None, ["not_a_trace.json"]),
    "binary-as-trace": ("profiler", ["import", "{garbage}"], None, ["garbage.pt"]),
    "unknown-pass": ("optimizers", ["apply", "mlp-tiny", "--passes", "turbo"], None, ["unknown pass 'turbo'"]),
    "conflicting-passes": ("optimizers", ["apply", "mlp-tiny", "--passes", "bf16,fp16"], None,
                           ["both precision passes"]),
    "pass-that-does-not-apply": ("optimizers", ["apply", "mlp-tiny", "--passes", "conv-bn-fold", *FAST_OPT], None,
                                 None),
    "corrupt-run-shown": ("profiler", ["show", "20260101-000000-mlp-tiny-broken"], _corrupt,
                          ["run.json is unreadable"]),
    "corrupt-run-listed": ("profiler", ["runs"], _corrupt, None),
    "corrupt-run-as-source": ("optimizers", ["apply", "--from-run", "20260101-000001-mlp-tiny-empty", "--passes",
                                             "bf16"], _corrupt, ["no run.json"]),
    "run-id-escapes": ("profiler", ["show", "../../etc"], None, ["invalid run id"]),
    "label-with-control-chars": ("profiler", ["rename", "{first_run}", "bell\x07"], None, ["one line"]),
    "delete-unknown-run": ("profiler", ["delete", "20200101-000000-none-000000"], None, ["no saved run"]),
    "full-disk": ("profiler", ["profile", "mlp-tiny", *FAST], "full_disk", ["the disk is full", "unchanged"]),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory, hostile):
    """Broken files that are not hostile: a truncated TorchScript, random bytes, an empty file, a truncated trace,
    JSON that is not a trace."""
    base = tmp_path_factory.mktemp("broken-files")
    f = {"truncated_ts": base / "truncated_script.pt", "garbage": base / "garbage.pt", "empty": base / "empty.pt",
         "truncated_trace": base / "truncated_trace.pt.trace.json.gz", "not_a_trace": base / "not_a_trace.json"}
    data = hostile.torchscript.read_bytes()
    f["truncated_ts"].write_bytes(data[: len(data) // 2])
    f["garbage"].write_bytes(os.urandom(4096))
    f["empty"].write_bytes(b"")
    real = (ROOT / "tests" / "data" / "cpu_only.pt.trace.json.gz").read_bytes()
    f["truncated_trace"].write_bytes(real[: len(real) // 3])
    f["not_a_trace"].write_text(json.dumps({"model": "resnet", "accuracy": 0.9}))
    return f


def _args(case_id, hostile, files, template_store):
    fields = {k: str(v) for k, v in files.items()} | {"first_run": sorted(template_store[1])[0]}
    return [a.format(h=hostile, **fields) for a in CASES[case_id][1]]


def _setup(case_id, root, monkeypatch):
    setup = CASES[case_id][2]
    if setup == "full_disk":  # every fsync fails with ENOSPC, as on a full disk with delayed allocation
        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(store.os, "fsync", full)
    elif setup:
        setup(root)


def _check(case_id, r, root, one_error, intact, hostile):
    needles = CASES[case_id][3]
    if needles is not None:
        one_error(r, *needles)
    else:
        assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, r.stderr
        CHECKS[case_id](r, root)
    intact(root)
    assert not hostile.marker.exists(), "a crafted pickle ran its command"
    assert not [p.name for p in root.iterdir() if p.name.startswith(store.PARTIAL)], "a half-written run was left"


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input_at_the_command_line(case_id, saved_runs, hostile, files, template_store, capsys, monkeypatch,
                                       one_error, intact):
    from optimizers import cli as optimizers_cli
    from profiler import cli as profiler_cli

    module, *_ = CASES[case_id]
    args = _args(case_id, hostile, files, template_store)
    _setup(case_id, saved_runs, monkeypatch)
    try:
        code = {"profiler": profiler_cli.main, "optimizers": optimizers_cli.main}[module](args)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out = capsys.readouterr()
    monkeypatch.undo()  # the full disk ends with the command
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(saved_runs))
    _check(case_id, subprocess.CompletedProcess(args, code, out.out, out.err), saved_runs, one_error, intact, hostile)


SUBPROCESS = ["pickle-in-pt2", "corrupt-run-listed", "unknown-pass"]


@pytest.mark.parametrize("case_id", SUBPROCESS)
def test_bad_input_as_typed(case_id, saved_runs, hostile, files, template_store, cli, one_error, intact):
    module, *_ = CASES[case_id]
    _setup(case_id, saved_runs, None)
    r = cli(module, *_args(case_id, hostile, files, template_store), timeout=300)
    _check(case_id, r, saved_runs, one_error, intact, hostile)


def _nan_is_a_warning_on_the_saved_run(r, root):
    assert "WARNING    output holds 4 NaN of 4 values" in r.stdout
    [new] = [s for s in store.list_runs(root) if s.model == "models:nan"]  # named file:factory
    assert any("NaN" in w for w in store.load(new.id, root).warnings)


def _skipped_with_its_reason(r, root):
    assert "skipped  conv-bn-fold" in r.stdout and "no convolution followed by BatchNorm" in r.stdout


def _damaged_runs_noted_not_listed(r, root):
    assert r.stderr.startswith("note: 2 damaged runs skipped: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "broken" not in r.stdout and "empty" not in r.stdout


CHECKS = {"nan-output": _nan_is_a_warning_on_the_saved_run, "pass-that-does-not-apply": _skipped_with_its_reason,
          "corrupt-run-listed": _damaged_runs_noted_not_listed}
