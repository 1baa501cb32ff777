"""What every bad-input case shares: a store with two saved runs that must still load afterwards, and hostile files.

The malicious pickles run `touch <marker>` through os.system when unpickled the ordinary way; `hostile` proves that
once per file (so a case that finds no marker means something), then removes the marker before the cases run.
"""
import io
import os
import pickle
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from profiler import ProfileRun, store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def template_store(tmp_path_factory):
    """Two saved mlp-tiny runs (one labelled), measured once per session; ids and medians to check against."""
    import profiler

    root = tmp_path_factory.mktemp("template") / "runs"
    os.environ.setdefault("OPLENS_LOCK_FILE", str(root.parent / "lock"))
    run = profiler.profile(profiler.load_model("mlp-tiny"),
                           profiler.ProfileConfig(warmup=1, repeats=2, min_time_s=0.0, profile_iters=1, graph=False))
    store.save(run, root)
    second = ProfileRun.from_dict(run.to_dict())
    second.id, second.label = run.id + "-b", "baseline"
    store.save(second, root)
    return root, {run.id: run.latency.median_ms, second.id: second.latency.median_ms}


@pytest.fixture(autouse=True)
def saved_runs(template_store, tmp_path, monkeypatch):
    """This case's own copy of the store; after the case, every run saved before it still loads, unchanged."""
    template, expected = template_store
    root = tmp_path / "runs"
    shutil.copytree(template, root)
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    yield root
    assert_store_intact(root, expected)


@pytest.fixture
def intact(template_store):
    """check(root): the template's runs are all still there in `root` (a case's own store)."""
    return lambda root: assert_store_intact(root, template_store[1])


def assert_store_intact(root: Path, expected: dict[str, float]) -> None:
    """Every run saved before still loads with its numbers, and is listed as valid."""
    for run_id, median in expected.items():
        assert store.load(run_id, root).latency.median_ms == median
    assert set(expected) <= {r.id for r in store.list_runs(root)}


class Evil:
    """Unpickled the ordinary way, this runs a shell command; its pickle names os.system, not this class."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@dataclass
class Hostile:
    dir: Path  # a data directory of the server (OPLENS_DATA_DIRS in the dashboard cases)
    marker: Path  # must never exist after any case
    state_dict: Path  # torch.save of an object that runs a command
    pkl: Path  # a plain pickle that runs a command
    pt2: Path  # a real torch.export archive whose example inputs run a command
    torchscript: Path  # a good TorchScript model whose sidecar inputs file runs a command
    hf_dir: Path  # a Hugging Face directory whose pytorch_model.bin runs a command
    whole_module: Path  # torch.save of a whole nn.Module (pickled code, not a state dict)
    models_py: Path  # factories: wrong shape, wrong dtype, NaN output, a forward that never returns


MODELS_PY = '''
import time
import torch


def wrong_shape():
    return torch.nn.Linear(4, 2), torch.ones(1, 3)


def wrong_dtype():
    return torch.nn.Linear(4, 2), torch.ones(1, 4, dtype=torch.int64)


class NaN(torch.nn.Module):
    def forward(self, x):
        return torch.log(x - 10)


def nan():
    return NaN(), torch.ones(1, 4)


class Hang(torch.nn.Module):
    def forward(self, x):
        while True:  # ignores signals' polite requests: only a kill ends it
            time.sleep(0.05)


def hang():
    return Hang(), torch.ones(1, 4)
'''


def _torch_pickle(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _runs_command(load, marker: Path) -> None:
    """Prove the file is really malicious: the ordinary, unsafe way of loading it creates the marker."""
    try:
        load()
    except Exception:  # noqa: BLE001 - the command ran before the loader noticed the object was not what it wanted
        pass
    assert marker.exists(), "the crafted file did not run its command: the cases that use it would prove nothing"
    marker.unlink()


@pytest.fixture(scope="session")
def hostile(tmp_path_factory) -> Hostile:
    d = tmp_path_factory.mktemp("data")
    marker = d.parent / "pwned"
    evil = Evil(marker)
    h = Hostile(dir=d, marker=marker, state_dict=d / "evil_state.pt", pkl=d / "evil.pkl", pt2=d / "evil.pt2",
                torchscript=d / "good_script.pt", hf_dir=d / "evil_hf", whole_module=d / "whole_module.pt",
                models_py=d / "models.py")
    h.state_dict.write_bytes(_torch_pickle(evil))
    h.pkl.write_bytes(pickle.dumps(evil))
    _runs_command(lambda: torch.load(h.state_dict, weights_only=False), marker)
    _runs_command(lambda: pickle.loads(h.pkl.read_bytes()), marker)

    good = d / "good.pt2"
    torch.export.save(torch.export.export(torch.nn.Linear(4, 2), (torch.ones(1, 4),)), good)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(h.pt2, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, _torch_pickle(evil) if item.filename.endswith("sample_inputs/model.pt") else data)
    _runs_command(lambda: torch.export.load(h.pt2), marker)  # torch falls back to weights_only=False

    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2)), h.torchscript)
    h.torchscript.with_suffix(".inputs.pt").write_bytes(_torch_pickle(evil))

    h.hf_dir.mkdir()
    from transformers import BertConfig

    BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32).save_pretrained(h.hf_dir)
    (h.hf_dir / "pytorch_model.bin").write_bytes(_torch_pickle(evil))

    h.whole_module.write_bytes(_torch_pickle(torch.nn.Linear(4, 2)))
    h.models_py.write_text(MODELS_PY)
    return h


@pytest.fixture
def no_marker(hostile):
    """Each case that loads a hostile file asserts, afterwards, that its command never ran."""
    yield hostile
    assert not hostile.marker.exists(), "a crafted pickle ran its command"
