"""profiler.policy: what the server lets in. Directories (symlinks and `..` resolved), code and pickles, size, names."""
import pickle
from pathlib import Path

import pytest
import tomllib
import torch

from profiler import policy, store

ROOT = Path(__file__).resolve().parents[2]


def test_default_data_dirs_and_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("OPLENS_DATA_DIRS", raising=False)
    dirs = policy.data_dirs()
    assert store.runs_dir().resolve() in dirs and ROOT / "tests" / "data" in dirs and policy.UPLOADS.resolve() in dirs
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("OPLENS_DATA_DIRS", f"{a}:{b}")
    assert policy.data_dirs() == [a.resolve(), b.resolve(), policy.UPLOADS.resolve()]  # uploads stay readable


def test_paths_are_resolved_before_they_are_judged(monkeypatch, tmp_path):
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "model.pt").write_bytes(b"x")
    (inside / "out").symlink_to("/etc")
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(inside))
    assert policy.allowed(inside / "model.pt") and policy.allowed(inside)
    for escape in (inside / ".." / "data2", inside / "out" / "hostname", Path("/etc/hostname"), tmp_path):
        assert not policy.allowed(escape)
        with pytest.raises(policy.PolicyError, match="this server reads model files only from"):
            policy.check_server_model(str(escape))


@pytest.mark.parametrize("spec", ["bert-tiny", "no-such-model", "hf:bert-base-uncased", "hf:org/model-v1.5"])
def test_names_that_are_not_paths_pass(spec):
    policy.check_server_model(spec)  # the loader judges them (unknown model, no network)


@pytest.mark.parametrize("spec", ["hf:../../etc", "hf:/etc/passwd", "hf:~root/x", "hf:a/b/c", "hf:.hidden",
                                  "hf:tests/data"])
def test_hub_ids_cannot_be_paths(spec, monkeypatch):
    monkeypatch.chdir(ROOT)  # where tests/data exists: transformers would read that folder, not the Hub
    with pytest.raises(policy.PolicyError, match="not a Hugging Face Hub id"):
        policy.check_server_model(spec)


@pytest.mark.parametrize("name, kind", [("m.py:build", "a Python file"), ("m.py", "a Python file"),
                                        ("w.pkl", "a pickle"), ("W.PICKLE", "a pickle"), ("w.pt", ""),
                                        ("w.pt2", ""), ("w.safetensors", "")])
def test_code_needs_allow_code(name, kind, monkeypatch, tmp_path):
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(tmp_path))
    monkeypatch.delenv("OPLENS_ALLOW_CODE", raising=False)
    spec = str(tmp_path / name)
    assert policy.code_kind(spec) == kind
    if kind:
        with pytest.raises(policy.PolicyError, match=f"is {kind}, which can carry code.*OPLENS_ALLOW_CODE=1"):
            policy.check_server_model(spec)
        monkeypatch.setenv("OPLENS_ALLOW_CODE", "1")
    policy.check_server_model(spec)
    monkeypatch.setenv("OPLENS_ALLOW_CODE", "yes")  # only "1" opens the door
    assert policy.allow_code() is False


def test_size_limit(monkeypatch, tmp_path):
    monkeypatch.setenv("OPLENS_DATA_DIRS", str(tmp_path))
    f = tmp_path / "w.pt"
    f.write_bytes(b"x" * 3 * 2**20)
    monkeypatch.setenv("OPLENS_MAX_FILE_MB", "2")
    with pytest.raises(policy.PolicyError, match="w.pt: 3 MiB is over this server's limit of 2 MiB"):
        policy.check_server_model(str(f))
    monkeypatch.setenv("OPLENS_MAX_FILE_MB", "4")
    policy.check_server_model(str(f))


@pytest.mark.parametrize("name, safe", [("model.pt", "model.pt"), ("../../etc/passwd", "passwd"),
                                        ("..\\..\\win.ini", "win.ini"), (".bashrc", "bashrc"), ("..", "upload"),
                                        ("", "upload"), ("my model (1).pt", "my_model_1_.pt"),
                                        ("a" * 300 + ".pt", "a" * 120)])
def test_upload_names_stay_in_their_folder(name, safe):
    assert policy.safe_upload_name(name) == safe


def test_the_server_config_is_strict_and_agrees_with_the_policy():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert config["address"] == "127.0.0.1"
    assert config["enableXsrfProtection"] is True and config["enableCORS"] is True
    assert config["maxUploadSize"] == policy.DEFAULT_MAX_FILE_MB  # one limit for uploads and server paths


def test_no_pickled_code_forces_weights_only_and_restores(tmp_path):
    f = tmp_path / "obj.pt"
    torch.save(torch.nn.Linear(2, 2), f)  # a whole module: needs full unpickling
    real_load, real_loads = torch.load, pickle.loads
    with policy.no_pickled_code():
        with pytest.raises(pickle.UnpicklingError):
            torch.load(f, weights_only=False)  # the caller's weights_only=False is overruled
        with pytest.raises(policy.PolicyError, match="never unpickles"):
            pickle.loads(pickle.dumps(1))
    assert torch.load is real_load and pickle.loads is real_loads
    assert isinstance(torch.load(f, weights_only=False), torch.nn.Linear)  # outside the guard, as before
