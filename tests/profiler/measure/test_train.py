"""Training steps: the breakdown adds up, a slow DataLoader's wait is measured, memory by category, the recorder in a
user's own loop, and one clear line for each kind of bad input."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from profiler.measure.train import train
from profiler.models.loading import load_model
from profiler.schema import ModelLoadError, ModelRunError, TrainConfig

FACTORY = textwrap.dedent("""
    import time
    import torch
    from torch import nn

    class Slow(torch.utils.data.Dataset):
        '''A dataset made slow on purpose: DELAY seconds per sample.'''
        def __init__(self, n=64, delay=0.0):
            self.x, self.y, self.delay = torch.randn(n, 16), torch.randint(0, 4, (n,)), delay
            self.spent = []  # what each item really took (a busy machine oversleeps)
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            t0 = time.perf_counter()
            time.sleep(self.delay)
            self.spent.append(time.perf_counter() - t0)
            return self.x[i], self.y[i]

    class Broken(Slow):
        def __getitem__(self, i):
            if i == 3:
                raise ValueError("sample 3 is corrupt")
            return super().__getitem__(i)

    def net():
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

    def slow_loader(batch_size=4):
        return net(), Slow(delay=0.005), nn.CrossEntropyLoss()

    def batch_and_loss(batch_size=8):
        return net(), (torch.randn(batch_size, 16), torch.randint(0, 4, (batch_size,))), nn.CrossEntropyLoss()

    def no_loss():
        return net(), (torch.randn(8, 16), torch.randint(0, 4, (8,))), None

    def nan_loss():
        return net(), (torch.full((8, 16), float("nan")), torch.randint(0, 4, (8,))), nn.CrossEntropyLoss()

    def frozen():
        m = net()
        for p in m.parameters():
            p.requires_grad_(False)
        return m, (torch.randn(8, 16), torch.randint(0, 4, (8,))), nn.CrossEntropyLoss()

    def crashing_worker():
        return net(), Broken(), nn.CrossEntropyLoss()
""")


@pytest.fixture(scope="module")
def user_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "mine.py"
    path.write_text(FACTORY)
    return path


def test_a_sample_trains_on_its_natural_loss_and_every_step_adds_up():
    run = train(load_model("mlp-tiny"), TrainConfig(batch_size=4, steps=3, warmup=1))
    t = run.training
    assert len(t.steps) == 3 and len(t.losses) == 4 and all(x == x for x in t.losses)
    assert "mean squared error" in run.notes[0]
    for s in t.steps:
        assert sum(s.phases.values()) == pytest.approx(s.wall_ms, rel=0.02)
        assert sum(s.categories.values()) == pytest.approx(s.wall_ms, rel=0.02)
        assert s.phases["forward"] > 0 and s.phases["backward"] > 0 and s.phases["optimizer"] > 0
    assert run.latency.median_ms == pytest.approx(t.wall.median)
    m = t.memory
    assert m.peak_bytes > 0 and m.peak_phase in ("data", "forward", "backward", "optimizer", "other")
    assert {"parameters", "gradients", "optimizer state"} <= set(m.peak_by_category) | set(m.bytes)
    assert len(m.times_ms) == len(next(iter(m.bytes.values())))


def test_a_classifier_and_a_decoder_get_their_natural_losses():
    bert = train(load_model("bert-tiny"), TrainConfig(steps=1, warmup=1, memory=False))
    assert "cross-entropy over 2 classes" in bert.notes[0]
    gpt = train(load_model("gpt2-tiny"), TrainConfig(steps=1, warmup=1, memory=False))
    assert "language-model loss" in gpt.notes[0] and gpt.training.losses[0] > 5  # ~ln(vocab) at random weights


def test_a_sentence_embedder_is_distilled_not_classified_by_embedding_dimension():
    """Real all-MiniLM-L6-v2: its [batch, 384] output is embeddings, not logits over 384 classes."""
    run = train(load_model("minilm", batch_size=4, seq_len=16), TrainConfig(steps=1, warmup=1, memory=False))
    assert "target embeddings" in run.notes[0] and "classes" not in run.notes[0]
    assert all(x == x and x > 0 for x in run.training.losses)


def test_a_slow_dataloader_wait_is_reported_within_ten_percent(user_file):
    """5 ms per sample, 4 samples a batch, no workers: the step waits 20 ms for each batch (more when a busy machine
    oversleeps: the dataset times what each item really took, and the breakdown must report that)."""
    loaded = load_model(f"{user_file}:slow_loader")
    run = train(loaded, TrainConfig(steps=3, warmup=1, memory=False))
    t = run.training
    assert t.config.batch_size == 4  # the factory's own default
    spent = loaded.dataset.spent
    per_batch = [1e3 * sum(spent[i:i + 4]) for i in range(0, len(spent), 4)][1:4]  # the timed steps' batches
    for s, injected in zip(t.steps, per_batch):
        assert injected >= 20.0
        assert s.phases["data"] == pytest.approx(injected, rel=0.10, abs=1.0)  # + collating the batch
        assert s.categories["DataLoader"] == pytest.approx(s.phases["data"], rel=0.05)
    assert t.input_bound and "DataLoader num_workers" in t.verdict


def test_a_factory_batch_and_loss(user_file):
    run = train(load_model(f"{user_file}:batch_and_loss"), TrainConfig(steps=2, warmup=1, memory=False))
    assert run.training.config.batch_size == 8 and "CrossEntropyLoss" in run.notes[0]


@pytest.mark.parametrize("factory,config,message", [
    ("no_loss", {}, "returned no loss"),
    ("nan_loss", {}, "the loss is nan at step 1"),
    ("frozen", {}, "no trainable parameters"),
    ("batch_and_loss", {"optimizer": "adagrad-turbo"}, "unknown optimizer 'adagrad-turbo'"),
    ("crashing_worker", {"workers": 1}, "the DataLoader failed: Caught ValueError"),
])
def test_bad_training_input_is_one_clear_line(user_file, factory, config, message):
    with pytest.raises((ModelRunError, ModelLoadError)) as exc:
        train(load_model(f"{user_file}:{factory}"), TrainConfig(steps=1, warmup=1, memory=False, **config))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_record_training_in_a_users_own_loop(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent(f"""
        import torch
        from torch import nn
        import profiler

        model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        data = torch.utils.data.TensorDataset(torch.randn(256, 16), torch.randint(0, 4, (256,)))
        loader = torch.utils.data.DataLoader(data, batch_size=16)
        with profiler.record_training(name="my-loop", runs_dir={str(tmp_path)!r}) as rec:
            for x, y in loader:
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad()
                rec.step(loss)
        print(rec.run.id)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.strip().splitlines()[-1]
    data = json.loads((tmp_path / run_id / "run.json").read_text())
    t = data["training"]
    assert data["model"]["name"] == "my-loop" and t["source"] == "recorder" and len(t["steps"]) == 5
    assert len(t["losses"]) == 16
    for s in t["steps"]:
        assert s["phases"]["data"] > 0 and s["phases"]["backward"] > 0 and s["phases"]["optimizer"] > 0
        assert sum(s["phases"].values()) == pytest.approx(s["wall_ms"], rel=0.02)


def test_cli_train_and_its_bad_inputs(tmp_path):
    cli = lambda *a: subprocess.run([sys.executable, "-m", "profiler", *a], capture_output=True, text=True,  # noqa
                                    timeout=300)
    r = cli("train", "mlp-tiny", "--steps", "2", "--warmup", "1", "--runs-dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for text in ("phases     data", "categories", "input      not input-bound", "memory     peak", "loss"):
        assert text in r.stdout
    bad = cli("train", "mlp-tiny", "--optimizer", "nope", "--runs-dir", str(tmp_path))
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_two_rank_gloo_run_flags_the_rank_slowed_on_purpose():
    from profiler.measure.distributed import train_ranks

    run = train_ranks("mlp-tiny", TrainConfig(steps=3, warmup=1, memory=False), 2, slow_rank=1, slow_ms=30)
    fast, slow = run.ranks
    assert slow.straggler and not fast.straggler and "wait" in slow.note
    assert 20 <= fast.comm_sync_ms <= 60 and slow.comm_sync_ms < 0.25 * fast.comm_sync_ms  # rank 0 waits ~30 ms
    assert run.training is not None and run.training.source == "trace" and len(run.training.steps) == 3


def test_a_users_own_step_function(tmp_path):
    (tmp_path / "loop.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))

        def step():
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
    """))
    r = subprocess.run([sys.executable, "-m", "profiler", "train", f"{tmp_path / 'loop.py'}:step", "--step-fn",
                        "--steps", "3", "--json", "--runs-dir", str(tmp_path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)["training"]
    assert len(t["steps"]) == 3 and len(t["losses"]) == 5  # 2 warm-up calls (the default) + 3 timed
    assert all(s["phases"]["backward"] > 0 and s["phases"]["optimizer"] > 0 for s in t["steps"])
    bad = subprocess.run([sys.executable, "-m", "profiler", "train", f"{tmp_path / 'loop.py'}:nope", "--step-fn",
                          "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "has no function 'nope'" in bad.stderr and "Traceback" not in bad.stderr
