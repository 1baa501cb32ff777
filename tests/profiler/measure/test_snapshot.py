"""Memory snapshots are pickles: they are read with an unpickler that refuses every global."""
import os
import pickle

import pytest
import torch

from profiler.measure import snapshot
from profiler.schema import ModelRunError
from tests.testdata import needs_cuda


def test_a_plain_snapshot_is_read_and_summed(tmp_path):
    data = {"segments": [{"total_size": 4096, "blocks": [{"size": 1024, "state": "active_allocated"},
                                                         {"size": 3072, "state": "inactive"}]}],
            "device_traces": []}
    (tmp_path / "s.pickle").write_bytes(pickle.dumps(data))
    got = snapshot.read_snapshot(tmp_path / "s.pickle")
    assert snapshot.summary(got) == {"reserved_bytes": 4096, "allocated_bytes": 1024, "blocks": 1,
                                     "largest_block_bytes": 1024}


def test_a_pickle_that_names_a_function_is_refused_without_running_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))
    (tmp_path / "evil.pickle").write_bytes(pickle.dumps({"segments": [Evil()]}))
    with pytest.raises(ModelRunError, match="names posix.system|names os.system"):
        snapshot.read_snapshot(tmp_path / "evil.pickle")
    assert not (tmp_path / "pwned").exists()


def test_taking_a_snapshot_needs_cuda(tmp_path):
    with pytest.raises(ModelRunError, match="needs a CUDA GPU"):
        snapshot.take_snapshot(lambda: None, tmp_path / "s.pickle", torch.device("cpu"))


@needs_cuda
def test_a_cuda_snapshot_of_a_step(tmp_path):
    dev = torch.device("cuda")
    model = torch.nn.Linear(256, 256).to(dev)

    def step():
        model(torch.randn(64, 256, device=dev)).sum().backward()
    got = snapshot.take_snapshot(step, tmp_path / "s.pickle", dev)
    assert got["allocated_bytes"] > 0 and snapshot.read_snapshot(tmp_path / "s.pickle")["segments"]
