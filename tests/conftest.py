import os
import subprocess
import sys

import pytest
import torch
from testdata import DATA, ROOT, SHARED_TRACES, needs_cuda  # noqa: F401 - for this file's fixtures


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own runs dir and lock file: nothing touches ./runs or another test's lock."""
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("OPLENS_LOCK_FILE", str(tmp_path / "measure.lock"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def cached_peaks(tmp_path, monkeypatch):
    """This machine's peaks, cached in the test's own cache dir: a page reads them and never measures."""
    import json

    from profiler.measure import peaks as peaks_mod
    from profiler.schema import Peaks

    monkeypatch.setenv("OPLENS_CACHE_DIR", str(tmp_path / "cache"))
    p = Peaks(device="cpu", name="test", source="measured", fp32_gflops=50.0, bf16_gflops=200.0, int8_gops=200.0,
              mem_bw_gbs=20.0)
    path = peaks_mod.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({peaks_mod.cache_key(torch.device("cpu")): p.to_dict()}))
    return p


def run_cli(module: str, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m <module> args` as a person runs it, from the repository root."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def one_error_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert the command failed as OpLens promises: exit 2, one `error:` line (after argparse's usage, if any),
    nothing else on stderr, no traceback anywhere; returns that line."""
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error: ")]
    usage = [x for x in lines if x.startswith(("usage: ", " "))]
    assert len(errors) == 1 and len(errors) + len(usage) == len(lines), r.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="session")
def cli():
    return run_cli


@pytest.fixture(scope="session")
def one_error():
    return one_error_line


@pytest.fixture
def one_thread():
    """One thread: on a shared 2-core machine two OpenMP threads wait on each other for milliseconds per op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast_config():
    from profiler import ProfileConfig

    return ProfileConfig(warmup=1, repeats=3, min_time_s=0.0, profile_iters=2)


@pytest.fixture(scope="session")
def tiny_bert_run(tmp_path_factory):
    """One saved bert-tiny run shared by the tests that only read a run."""
    import profiler

    root = tmp_path_factory.mktemp("shared-runs")
    os.environ.setdefault("OPLENS_LOCK_FILE", str(root / "lock"))
    loaded = profiler.load_model("bert-tiny")
    run = profiler.profile(loaded, profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0.0, profile_iters=2))
    profiler.store.save(run, root)
    return run, root



@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    """A run store two participants used: ann profiled bert-tiny at batch 1 and 4 and applied bf16, dynamic-int8
    and torchscript-freeze to her batch-4 run; bob profiled it once and applied bf16. Real runs, measured small."""
    import torch

    import optimizers
    import profiler
    from optimizers import results

    root = tmp_path_factory.mktemp("classroom")
    cfg = profiler.ProfileConfig(warmup=1, repeats=3, min_time_s=0.0, profile_iters=1, graph=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {}
        for who, batch in (("ann", 1), ("bob", 2), ("ann", 4)):
            loaded = profiler.load_model("bert-tiny", batch_size=batch)
            run = profiler.profile(loaded, cfg)
            run.participant = who
            profiler.store.save(run, root)
            runs[(who, batch)] = (run, loaded)
        for who, batch, passes in (("ann", 4, ["bf16"]), ("ann", 4, ["dynamic-int8"]),
                                   ("ann", 4, ["torchscript-freeze"]), ("bob", 2, ["bf16"])):
            base, loaded = runs[(who, batch)]
            result = optimizers.optimize(loaded, passes, cfg, runs_dir=str(root), base_run=base)
            saved = results.from_apply(result, loaded, cfg, source_run_id=base.id)
            saved.participant = who
            results.keep(saved, root)
    finally:
        torch.set_num_threads(before)
    return root, {key: run for key, (run, _) in runs.items()}


@pytest.fixture
def in_classroom(classroom, monkeypatch):
    root, runs = classroom
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    return root, runs
