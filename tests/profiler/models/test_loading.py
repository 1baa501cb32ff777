"""Every model source loads; every bad input gets its own message (ModelLoadError), never a raw traceback."""
import textwrap

import pytest
import torch

import sample_models
from optimizers.validate import primary_tensor
from profiler import ModelLoadError, load_model


def _run(loaded):
    with torch.no_grad():
        return loaded()


def test_registry_names_and_tiny_variants():
    names = set(sample_models.names())
    for base in ["mlp", "cnn", "resnet18", "lstm", "bert-base", "distilbert", "gpt2", "vit-base", "minilm"]:
        assert base in names
        assert (base.replace("-base", "") + "-tiny") in names or (base + "-tiny") in names


@pytest.mark.parametrize("name", [n for n in sample_models.names() if n.endswith("-tiny")])
def test_each_tiny_model_loads_and_runs(name):
    loaded = load_model(name)
    assert loaded.info.parameters > 0 and loaded.info.source == "registry"
    out = primary_tensor(_run(loaded))
    assert out.shape[0] == loaded.batch_size and torch.isfinite(out).all(), (tuple(out.shape), loaded.batch_size)
    assert loaded.info.parameters == sum(p.numel() for p in loaded.module.parameters())


def test_batch_and_seq_len_reach_the_inputs():
    loaded = load_model("bert-tiny", batch_size=3, seq_len=24)
    assert loaded.kwargs["input_ids"].shape == (3, 24)
    loaded = load_model("vit-tiny", batch_size=2, seq_len=32)
    assert loaded.kwargs["pixel_values"].shape == (2, 3, 32, 32)


def test_minilm_has_real_weights_and_tokenizer():
    loaded = load_model("minilm", batch_size=8, seq_len=32)
    emb = _run(loaded)
    assert emb.shape == (8, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(8), atol=1e-5)
    # sentence 0 "A man is eating food." is closer to 1 (eating bread) than to 7 (a monkey playing drums)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 7] + 0.2
    assert loaded.kwargs["input_ids"][0, 0].item() == 101  # [CLS] from the real tokenizer


def test_python_file_with_factory_and_inputs(tmp_path):
    f = tmp_path / "my_model.py"
    f.write_text(textwrap.dedent("""
        import torch
        def make(batch_size=1):
            m = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.ReLU())
            return m, torch.randn(batch_size, 6)
    """))
    loaded = load_model(f"{f}:make", batch_size=5)
    assert loaded.info.source == "file" and loaded.args[0].shape == (5, 6)
    assert _run(loaded).shape == (5, 3)


def test_three_factories_of_one_file_are_three_models_and_an_ignored_size_is_said(tmp_path):
    """Issue 21: every factory of mine.py was "mine" in every run picker, and --seq-len on a factory with
    image_size was dropped without a word."""
    f = tmp_path / "mine.py"
    f.write_text(textwrap.dedent("""
        import torch
        def cnn(image_size=8):
            return torch.nn.Conv2d(3, 4, 3), torch.randn(2, 3, image_size, image_size)
        def mlp(batch_size=4):
            return torch.nn.Linear(6, 3), torch.randn(batch_size, 6)
        def anything(**options):
            return torch.nn.Linear(6, 3), torch.randn(options.get("batch_size", 1), 6)
    """))
    cnn = load_model(f"{f}:cnn", seq_len=128)
    mlp = load_model(f"{f}:mlp", batch_size=3, seq_len=128)
    assert (cnn.info.name, mlp.info.name) == ("mine:cnn", "mine:mlp")
    [note] = cnn.info.notes
    assert note == ("mine.py:cnn() takes image_size, so sequence length / image size (--seq-len) 128 could not be "
                    "applied: measured at its own inputs (batch 2, sequence/image 8)")
    assert mlp.args[0].shape == (3, 6) and "--seq-len" in mlp.info.notes[0] and "--batch-size" not in mlp.info.notes[0]
    anything = load_model(f"{f}:anything", batch_size=5)
    assert anything.info.notes == [] and anything.args[0].shape == (5, 6)  # **options is given every size


def test_python_file_module_only_gets_inferred_inputs(tmp_path):
    f = tmp_path / "plain.py"
    f.write_text(
        "import torch\ndef build_model():\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())\n"
    )
    loaded = load_model(str(f), batch_size=2, seq_len=16)  # default factory name found
    assert loaded.args[0].shape == (2, 3, 16, 16)


def test_torchscript_file(tmp_path):
    m = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU()))
    path = tmp_path / "scripted.pt"
    m.save(str(path))
    loaded = load_model(str(path), batch_size=3)
    assert loaded.info.source == "torchscript" and _run(loaded).shape == (3, 4)


def test_export_pt2_file(tmp_path):
    m = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh()).eval()
    x = torch.randn(2, 8)
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(m, (x,)), str(path))
    loaded = load_model(str(path))
    assert loaded.info.source == "export"
    assert torch.allclose(_run(loaded), m(x), atol=1e-6)


def test_hf_directory(tmp_path):
    src = load_model("bert-tiny").module
    src.save_pretrained(tmp_path / "bert")
    loaded = load_model(str(tmp_path / "bert"), batch_size=2, seq_len=12)
    assert loaded.info.source == "hf-dir" and loaded.kwargs["input_ids"].shape == (2, 12)
    out = _run(loaded)
    assert out.logits.shape == (2, 2)


def test_hf_directory_with_tokenizer_is_the_minilm_package():
    loaded = load_model(sample_models.minilm_dir(), batch_size=2, seq_len=16)
    assert loaded.info.source == "hf-dir" and loaded.kwargs["input_ids"][0, 0].item() == 101


def test_state_dict_into_named_architecture(tmp_path):
    ref = load_model("mlp-tiny")
    path = tmp_path / "weights.pt"
    torch.save(ref.module.state_dict(), path)
    loaded = load_model(str(path), arch="mlp-tiny")
    assert loaded.info.source == "state-dict"
    for a, b in zip(ref.module.state_dict().values(), loaded.module.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("spec, message", [
    ("no-such-model", "unknown model 'no-such-model'"),
    ("missing/file.pt", "model file not found"),
    ("missing.py:build", "model file not found"),
    ("", "no model given"),
])
def test_bad_specs(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(spec)


def test_not_a_model_file(tmp_path):
    f = tmp_path / "notes.pt"
    f.write_text("hello, I am not a model")
    with pytest.raises(ModelLoadError, match="not a model file"):
        load_model(str(f))


def test_state_dict_without_arch(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"weight": torch.ones(2)}, path)
    with pytest.raises(ModelLoadError, match="--arch"):
        load_model(str(path))


def test_state_dict_that_does_not_fit(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"weight": torch.ones(2)}, path)
    with pytest.raises(ModelLoadError, match="does not fit architecture 'mlp-tiny'"):
        load_model(str(path), arch="mlp-tiny")


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled module: needs code execution to load
    with pytest.raises(ModelLoadError, match="not a model file"):
        load_model(str(path))


def test_factory_not_found(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def something():\n    pass\n")
    with pytest.raises(ModelLoadError, match=r"factory 'nope' not found .* callables there: something"):
        load_model(f"{f}:nope")


def test_factory_that_raises_and_file_that_does_not_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def build():\n    raise ValueError('boom')\n")
    with pytest.raises(ModelLoadError, match=r"build\(\) raised ValueError: boom"):
        load_model(f"{f}:build")
    g = tmp_path / "broken.py"
    g.write_text("import no_such_package_xyz\n")
    with pytest.raises(ModelLoadError, match="importing .*broken.py failed: ModuleNotFoundError"):
        load_model(f"{g}:build")


@pytest.mark.parametrize("source, message", [
    ("def build():\n    return 42\n", "returned int, not a torch.nn.Module"),
    ("import torch\ndef build():\n    return torch.nn.ReLU()\n", "no example inputs given"),
    (textwrap.dedent("""
        import torch
        class Two(torch.nn.Module):
            def forward(self, a, b):
                return a + b
        def build():
            return Two(), {"a": torch.ones(2), "c": torch.ones(2)}
    """), r"do not match forward\(self, a, b\)|do not match forward\(a, b\)"),
])
def test_factory_files_that_give_no_usable_model(tmp_path, source, message):
    f = tmp_path / "m.py"
    f.write_text(source)
    with pytest.raises(ModelLoadError, match=message):
        load_model(f"{f}:build")


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


@pytest.mark.slow  # waits out the hub client's own offline retries: ~25 s
def test_hub_id_offline_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not fetch 'bert-base-uncased' from the Hugging Face Hub"):
        load_model("hf:bert-base-uncased")


def test_inputs_file_is_read_weights_only(tmp_path):
    m = torch.jit.script(torch.nn.Linear(3, 2))
    m.save(str(tmp_path / "lin.pt"))
    torch.save((torch.randn(7, 3),), tmp_path / "inputs.pt")
    loaded = load_model(str(tmp_path / "lin.pt"), inputs=str(tmp_path / "inputs.pt"))
    assert loaded.args[0].shape == (7, 3)


def test_specs_for_files_and_hub_ids(tmp_path):
    from profiler.models.loading import file_spec, hub_spec

    assert file_spec(tmp_path / "m.py", "build") == f"{tmp_path / 'm.py'}:build"
    assert file_spec(tmp_path / "m.py", " ") == f"{tmp_path / 'm.py'}:build_model"
    assert file_spec(tmp_path / "model.pt2", "build") == str(tmp_path / "model.pt2")
    assert hub_spec(" bert-base-uncased ") == "hf:bert-base-uncased" and hub_spec("  ") == ""
    f = tmp_path / "m.py"
    f.write_text("import torch\ndef build():\n    return torch.nn.Linear(3, 2), torch.zeros(4, 3)\n")
    assert load_model(file_spec(f, "build")).batch_size == 4  # load_model takes what file_spec makes
# ---------------------------------------------------------------- model sources and synthetic inputs

def test_profiler_does_not_import_the_sample_models_until_it_looks_for_a_model():
    import subprocess
    import sys

    code = ("import sys, profiler.models.loading, profiler.measure.session, profiler.cli, profiler.measure.generate\n"
            "before = 'sample_models' in sys.modules\n"
            "from profiler.models import sources\n"
            "names = sources.catalogue_names()\n"
            "print(before, 'sample_models' in sys.modules, 'bert-tiny' in names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True", "True"], out.stderr[-500:]


def test_a_registered_source_loads_its_specs_and_serves_as_an_architecture(tmp_path):
    from profiler.models import loading, sources

    def load(r: sources.LoadRequest):
        module = torch.nn.Linear(8, 2)
        return loading.finish(module, (torch.ones(r.batch_size or 3, 8),), {}, r.spec, "zoo", r.spec, "", None, None)

    def entries():
        return [sources.ModelEntry("zoo-linear", "a linear layer", "features", 3, 0)]

    sources.register(sources.ModelSource("zoo", claims=lambda spec: spec == "zoo-linear", load=load, entries=entries),
                     first=True)
    try:
        loaded = load_model("zoo-linear", batch_size=4)
        assert loaded.info.source == "zoo" and loaded.batch_size == 4 and _run(loaded).shape == (4, 2)
        assert "zoo-linear" in sources.catalogue_names() and "bert-tiny" in sources.catalogue_names()
        weights = tmp_path / "w.pt"
        torch.save({"weight": torch.full((2, 8), 0.5), "bias": torch.zeros(2)}, weights)
        as_arch = load_model(str(weights), arch="zoo-linear")
        assert as_arch.info.source == "state-dict" and _run(as_arch)[0].tolist() == [4.0, 4.0]  # 8 ones x 0.5
    finally:
        sources.unregister("zoo")
    with pytest.raises(ModelLoadError, match="unknown model 'zoo-linear'"):
        load_model("zoo-linear")


def test_samples_and_inferred_inputs_come_from_one_seeded_place(tmp_path):
    from profiler.models import inputs
    from profiler.models.loading import infer_inputs

    torch.manual_seed(123)  # the global seed does not move them: they use their own generator
    bert = load_model("bert-tiny", batch_size=2, seq_len=16)
    expected = inputs.text_inputs(30522, 2, 16)
    assert torch.equal(bert.kwargs["input_ids"], expected["input_ids"])
    assert int(expected["input_ids"].min()) >= 5  # ids below 5 are special tokens
    mlp = load_model("mlp-tiny", batch_size=4)
    assert torch.equal(mlp.args[0], inputs.features(4, 32))
    args, _ = infer_inputs(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), 2, 8)
    assert torch.equal(args[0], inputs.image_inputs(2, 8, 3)) and args[0].shape == (2, 3, 8, 8)
    args, _ = infer_inputs(torch.nn.Embedding(50, 4), 2, 7)
    assert torch.equal(args[0], inputs.token_ids(50, 2, 7)) and int(args[0].max()) < 50
