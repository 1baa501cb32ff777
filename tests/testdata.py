"""What test modules share: where the data lives, the CUDA skip mark, waiting for a job (`from testdata import DATA`).
Not in a conftest.py: pytest imports every conftest.py as the module "conftest", so a name imported from one could
come from another folder's."""
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared" / "traces"
DATA = Path(__file__).parent / "data"

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _exact_int8() -> bool:
    from profiler.devices import cpu_features

    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_features()))


# int8 accuracy targets met where the CPU computes 8-bit activations exactly (VNNI / AMX); on an AVX2-only CPU
# (AMD Zen 3) fbgemm and oneDNN quantize activations to 7 bits and these targets are missed, measured: that is
# issue #20's work. Strict: a pass there (once #20 lands) fails the mark, so it is taken off.
int8_needs_vnni = pytest.mark.xfail(not _exact_int8(), strict=True,
                                    reason="7-bit activations on a CPU without VNNI miss this accuracy (issue #20)")


def wait(job, timeout: float = 120):
    """Until a profiler.jobs Job has ended; fails the test when it is still queued or running after `timeout` s."""
    deadline = time.time() + timeout
    while job.active and time.time() < deadline:
        time.sleep(0.1)
    assert not job.active, f"job still {job.status} at {job.stage}"
    return job


def in_process(main, *args: str):
    """A CLI's `main(argv)` called in this process, as `python -m ...` would run it, without the seconds a new
    interpreter spends importing torch: (returncode, stdout, stderr) as subprocess.CompletedProcess has them. The
    tests of what a terminal sees (no log noise, no traceback from a real process) run the real command instead."""
    import contextlib
    import io
    import subprocess

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
