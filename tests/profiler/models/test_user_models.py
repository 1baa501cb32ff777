"""Models as users write them: their own default sizes, dict inputs, odd outputs; suspect measurements are flagged."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from profiler import load_model, profile
from profiler.measure.checks import input_warnings, output_warnings
from profiler.models.loading import input_sizes
from testdata import in_process

FACTORY = textwrap.dedent("""
    import torch

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(100, 16)
            self.out = torch.nn.Linear(16, 4)

        def forward(self, input_ids, attention_mask=None):
            return {"scores": self.out(self.emb(input_ids)), "mask": attention_mask}

    def build(batch_size=8, seq_len=64):
        ids = torch.randint(0, 100, (batch_size, seq_len))
        return Tagger(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
""")


@pytest.fixture
def factory(tmp_path):
    f = tmp_path / "my_model.py"
    f.write_text(FACTORY)
    return f"{f}:build"


def test_factory_keeps_its_own_defaults(factory):
    loaded = load_model(factory)
    assert loaded.kwargs["input_ids"].shape == (8, 64)
    assert (loaded.batch_size, loaded.seq_len) == (8, 64)


def test_only_the_sizes_given_are_passed_on(factory):
    loaded = load_model(factory, batch_size=3)
    assert loaded.kwargs["input_ids"].shape == (3, 64)
    loaded = load_model(factory, seq_len=5)
    assert loaded.kwargs["input_ids"].shape == (8, 5)
    assert (loaded.batch_size, loaded.seq_len) == (8, 5)


def test_config_records_the_sizes_read_back_from_the_inputs(tmp_path, fast_config):
    f = tmp_path / "fixed.py"  # ignores the sizes it is given: the run must say what really ran
    f.write_text("import torch\ndef build(batch_size=1):\n    return torch.nn.Linear(12, 3), torch.randn(7, 12)\n")
    loaded = load_model(f"{f}:build", batch_size=2)
    run = profile(loaded, fast_config)
    assert (run.config.batch_size, run.config.seq_len) == (7, 0)
    assert run.warnings == []


@pytest.mark.parametrize("args,kwargs,want", [
    ((torch.zeros(4, 10, dtype=torch.long),), {}, (4, 10)),  # token ids
    ((), {"pixel_values": torch.zeros(2, 3, 32, 32)}, (2, 32)),  # image
    ((torch.zeros(5, 9, 6),), {}, (5, 9)),  # sequence of features
    ((torch.zeros(6, 12),), {}, (6, 0)),  # feature vectors: no length
    ((), {"attention_mask": torch.ones(3, 4), "input_ids": torch.zeros(3, 11, dtype=torch.long)}, (3, 11)),
])
def test_input_sizes(args, kwargs, want):
    assert input_sizes(args, kwargs) == want


def test_registry_sizes_are_what_the_model_runs_at():
    loaded = load_model("vit-tiny", batch_size=3)
    assert (loaded.batch_size, loaded.seq_len) == (3, 32)


def test_empty_input_is_flagged_on_the_run(tmp_path, fast_config):
    f = tmp_path / "empty.py"
    f.write_text(textwrap.dedent("""
        import torch
        def build(batch_size=2, seq_len=0):
            return torch.nn.Embedding(50, 8), torch.randint(0, 50, (batch_size, seq_len))
    """))
    run = profile(load_model(f"{f}:build"), fast_config)
    assert len(run.warnings) == 1 and "[2, 0]" in run.warnings[0] and "zero-size" in run.warnings[0]


def test_nan_output_is_flagged_on_the_run(tmp_path, fast_config):
    f = tmp_path / "nan.py"
    f.write_text(textwrap.dedent("""
        import torch
        class Log(torch.nn.Module):
            def forward(self, x):
                return (x.log(), x)
        def build():
            return Log(), torch.tensor([[-1.0, 0.0, 2.0]])
    """))
    run = profile(load_model(f"{f}:build"), fast_config)
    assert len(run.warnings) == 1
    assert "output[0]" in run.warnings[0] and "1 NaN and 1 Inf of 3" in run.warnings[0]


def test_checks_pass_clean_models():
    assert input_warnings((torch.ones(2, 3),), {"m": torch.ones(2)}) == []
    assert output_warnings({"logits": torch.ones(2, 3), "ids": torch.zeros(2, dtype=torch.long)}) == []


def test_cli_summary_shows_the_warning_and_the_real_sizes(tmp_path):
    f = tmp_path / "empty.py"
    f.write_text("import torch\ndef build(batch_size=3, seq_len=0):\n"
                 "    return torch.nn.Embedding(50, 8), torch.randint(0, 50, (batch_size, seq_len))\n")
    env = dict(os.environ, OPLENS_RUNS_DIR=str(tmp_path / "runs"))
    r = subprocess.run([sys.executable, "-m", "profiler", "profile", f"{f}:build", "--repeats", "3", "--min-time", "0",
                        "--no-graph"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "WARNING" in r.stdout and "zero-size" in r.stdout
    assert "batch x seq/image 3;" in r.stdout  # the batch the factory's default made; no sequence length
    from profiler.cli.commands import main  # the rest in this process: what was saved, not what a terminal shows

    r = in_process(main, "runs", "--json", "--runs-dir", str(tmp_path / "runs"))
    run_id = json.loads(r.stdout)[0]["id"]
    r = in_process(main, "show", run_id, "--json", "--runs-dir", str(tmp_path / "runs"))
    [warning] = json.loads(r.stdout)["warnings"]
    assert "zero-size" in warning and "[3, 0]" in warning  # the saved run names the empty input
