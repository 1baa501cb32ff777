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


def wait(job, timeout: float = 120):
    """Until a profiler.jobs Job has ended; fails the test when it is still queued or running after `timeout` s."""
    deadline = time.time() + timeout
    while job.active and time.time() < deadline:
        time.sleep(0.1)
    assert not job.active, f"job still {job.status} at {job.stage}"
    return job
