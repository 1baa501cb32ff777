"""Where the tests' data lives, and the CUDA skip mark: imported by test modules (`from testdata import DATA`). Not in
a conftest.py: pytest imports every conftest.py as the module "conftest", so a name imported from one could come from
another folder's."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = ROOT.parent / "shared" / "traces"
DATA = Path(__file__).parent / "data"

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
