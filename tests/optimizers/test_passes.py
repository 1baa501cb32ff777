"""Each pass on a tiny model: its numerical result within a stated tolerance, its refusal reasons, and the original
model left untouched. No timing claims here (benchmarks/optimizers.py measures speed)."""
import pytest
import torch
from testdata import int8_needs_vnni
from torch import nn

import optimizers
import profiler
from optimizers import PassConflictError, UnknownPassError, apply_pipeline, compare_outputs, conflicts
from optimizers.optimize import outputs
from profiler.devices import resolve_device

CPU = resolve_device("cpu")


def run(name, passes, **load):
    loaded = profiler.load_model(name, **load)
    before = {k: v.clone() for k, v in loaded.module.state_dict().items()}
    ref = outputs(loaded, CPU)
    new, results = apply_pipeline(loaded, passes, CPU)
    after = loaded.module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before), "original changed"
    acc = compare_outputs(ref, outputs(new, CPU), loaded.info.task)
    return new, results, acc


@pytest.mark.parametrize("name, passes, min_cosine", [
    ("bert-tiny", ["bf16"], 0.999),
    ("bert-tiny", ["autocast"], 0.999),
    ("bert-tiny", ["dynamic-int8"], 0.99),
    ("lstm-tiny", ["dynamic-int8"], 0.99),
    ("bert-tiny", ["weight-only-int8"], 0.999),
    ("cnn-tiny", ["channels-last"], 0.99999),
    ("bert-tiny", ["torchscript-freeze"], 0.99999),
])
def test_pass_keeps_outputs_within_tolerance(name, passes, min_cosine):
    new, results, acc = run(name, passes)
    assert all(r.applied for r in results), results
    assert acc.cosine >= min_cosine, acc
    assert acc.top1_agreement is not None and acc.top1_agreement >= 0.99  # every model here classifies


def test_bf16_casts_weights_and_inputs():
    new, _, _ = run("bert-tiny", ["bf16"])
    assert {p.dtype for p in new.module.parameters()} == {torch.bfloat16}


def test_dynamic_int8_replaces_linears():
    new, results, _ = run("bert-tiny", ["dynamic-int8"])
    assert not any(type(m) is nn.Linear for m in new.module.modules())
    assert results[0].details["layers_quantized"] == 14


def test_conv_bn_fold_is_exact_and_removes_batchnorm():
    new, results, acc = run("cnn-tiny", ["conv-bn-fold"])
    assert results[0].details == {"folded": 4}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in new.module.modules())
    assert acc.max_abs_err < 1e-4


def test_conv_bn_fold_on_resnet_layers():
    new, results, acc = run("resnet18-tiny", ["conv-bn-fold"])
    assert results[0].applied and results[0].details["folded"] >= 9
    assert acc.max_abs_err < 1e-4


def test_magnitude_prune_reports_sparsity_honestly():
    new, results, _ = run("mlp-tiny", ["magnitude-prune"])
    r = results[0]
    assert r.details["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert any("no faster" in w for w in r.warnings)


def test_structured_prune_really_shrinks_the_matrices():
    new, results, acc = run("bert-tiny", ["structured-prune"])
    inter = new.module.bert.encoder.layer[0].intermediate.dense
    assert inter.out_features == 384 and inter.weight.shape == (384, 128)
    assert new.module.bert.encoder.layer[0].output.dense.weight.shape == (128, 384)
    assert results[0].details["neurons_removed"] == 2 * 128
    assert acc.cosine > 0.9  # an approximation: the tolerance may fail it, and the result says so


def test_lowrank_recovers_a_low_rank_layer_exactly(tmp_path):
    f = tmp_path / "lr.py"
    f.write_text("import torch\ndef build():\n    torch.manual_seed(0)\n    lin = torch.nn.Linear(128, 128)\n"
                 "    with torch.no_grad():\n        lin.weight.copy_(torch.randn(128, 4) @ torch.randn(4, 128))\n"
                 "    return torch.nn.Sequential(lin), torch.randn(8, 128)\n")
    new, results, acc = run(f"{f}:build", ["lowrank-svd"])
    assert results[0].applied and results[0].details["ranks"] == [4]
    assert acc.max_abs_err < 1e-3


def test_lowrank_refuses_flat_spectra():
    _, results, _ = run("bert-tiny", ["lowrank-svd"])
    assert not results[0].applied and "flat spectra" in results[0].reason


def test_sdpa_refuses_when_already_fused_and_switches_eager_models():
    _, results, _ = run("bert-tiny", ["sdpa"])
    assert not results[0].applied and "already uses fused attention" in results[0].reason
    loaded = profiler.load_model("bert-tiny")
    loaded.module.set_attn_implementation("eager")
    ref = outputs(loaded, CPU)
    new, results = apply_pipeline(loaded, ["sdpa"], CPU)
    assert results[0].applied and new.module.config._attn_implementation == "sdpa"
    assert loaded.module.config._attn_implementation == "eager"
    assert compare_outputs(ref, outputs(new, CPU)).max_abs_err < 1e-4


def test_threads_applies_only_when_it_changes_something(monkeypatch):
    from optimizers import runtime

    monkeypatch.setattr(runtime, "physical_cores", lambda: torch.get_num_threads())
    _, results, _ = run("mlp-tiny", ["threads"])
    assert not results[0].applied and "already using" in results[0].reason
    monkeypatch.setattr(runtime, "physical_cores", lambda: 1)
    new, results, acc = run("mlp-tiny", ["threads"])
    before = torch.get_num_threads()
    outputs(new, CPU)
    assert results[0].applied and torch.get_num_threads() == before and acc.max_abs_err == 0


@pytest.mark.parametrize("name", ["fp16", "pinned-memory", "resident-inputs", "cuda-graphs", "sparsity-2to4"])
def test_gpu_passes_refuse_on_cpu(name):
    _, results, _ = run("mlp-tiny", [name])
    assert not results[0].applied and "cuda only" in results[0].reason


def test_refusals_name_the_reason():
    _, results, _ = run("mlp-tiny", ["conv-bn-fold", "channels-last"])
    assert [r.reason for r in results] == ["no convolution followed by BatchNorm to fold",
                                           "no nn.Conv2d layers: channels_last only helps convolutions"]
    _, results, _ = run("mlp-tiny", ["bf16", "dynamic-int8"])
    assert results[0].applied and not results[1].applied and "float32" in results[1].reason


@pytest.mark.parametrize("name", ["bert-tiny", "gpt2-tiny", "vit-tiny"])
def test_bf16_attention_matches_stock_attention(name):
    """gpt2 checks the causal mask built here; vit a model without token inputs."""
    new, results, acc = run(name, ["bf16-attention"])
    assert results[0].applied and acc.cosine >= 0.9999, acc
    assert new.module.config._attn_implementation == "oplens-bf16-math"


def test_bf16_attention_keeps_padding_masked_on_real_minilm():
    """Real sentences of different lengths are padded: attending to the padding would wreck the embeddings
    (cosine 0.58 before the mask function was registered with the attention function)."""
    _, results, acc = run("minilm", ["bf16-attention"], batch_size=8, seq_len=32)
    assert results[0].applied and acc.kind == "sentence-embedding" and acc.cosine >= 0.9999, acc


def test_bf16_attention_refusals():
    _, results, _ = run("mlp-tiny", ["bf16-attention"])
    assert not results[0].applied and "not a Hugging Face" in results[0].reason
    _, results, _ = run("bert-tiny", ["dynamic-int8", "bf16-attention"])
    assert not results[1].applied and "before quantizing" in results[1].reason


def test_float_passes_refuse_int8_models():
    for precision in ("bf16", "autocast"):
        _, results, _ = run("mlp-tiny", ["dynamic-int8", precision])
        assert results[0].applied and not results[1].applied and "already int8-quantized" in results[1].reason


def test_static_int8_is_compiled_by_torch_compile_not_torchscript():
    _, results, _ = run("mlp-tiny", ["static-int8", "torchscript-freeze"])
    assert results[0].applied and not results[1].applied and "use torch-compile" in results[1].reason


def test_stop_at_refusal_ends_the_pipeline_at_the_first_pass_that_does_not_apply():
    loaded = profiler.load_model("mlp-tiny")
    _, results = apply_pipeline(loaded, ["bf16", "dynamic-int8", "threads"], CPU, stop_at_refusal=True)
    assert [r.name for r in results] == ["bf16", "dynamic-int8"] and not results[1].applied
    _, results = apply_pipeline(loaded, ["bf16", "dynamic-int8", "threads"], CPU)
    assert [r.name for r in results] == ["bf16", "dynamic-int8", "threads"]


def test_pipelines_compose_in_order():
    new, results, acc = run("cnn-tiny", ["conv-bn-fold", "channels-last"])
    assert [r.applied for r in results] == [True, True]
    assert acc.cosine > 0.99999


def test_conflicts_are_refused_with_the_reason():
    assert conflicts(["bf16", "autocast"]) == ["bf16 and autocast are both precision passes; choose one"]
    assert "must come last" in conflicts(["torch-compile", "bf16"])[0]
    with pytest.raises(PassConflictError, match="choose one"):
        apply_pipeline(profiler.load_model("mlp-tiny"), ["dynamic-int8", "weight-only-int8"], CPU)
    with pytest.raises(UnknownPassError, match="unknown pass 'warp-drive'"):
        conflicts(["warp-drive"])


FAMILIES = {"compilation & fusion", "precision", "quantization", "structure", "memory & layout", "runtime"}


def test_every_pass_is_registered_under_its_name_in_a_known_family():
    for key, p in optimizers.REGISTRY.items():
        assert key == p.name and p.family in FAMILIES, (key, p.family)
        assert set(p.devices) <= {"cpu", "cuda"} and p.devices, p.name
        assert all(partner in optimizers.REGISTRY for partner in p.pays_off_with), p.name


def test_what_the_registry_says_about_devices_and_order():
    reg = optimizers.REGISTRY
    gpu_only = {n for n, p in reg.items() if p.devices == ("cuda",)}
    assert gpu_only == {"fp16", "pinned-memory", "resident-inputs", "cuda-graphs", "sparsity-2to4"}  # the README
    assert {n for n, p in reg.items() if p.terminal} == {"torch-compile", "torchscript-freeze", "cuda-graphs",
                                                         "onnxruntime", "onnxruntime-int8", "openvino"}
    assert reg["static-int8"].pays_off_with == ("torch-compile",)
    assert {n for n, p in reg.items() if p.family == "quantization"} == {"dynamic-int8", "static-int8",
                                                                         "weight-only-int8", "accuracy-int8"}


@pytest.mark.parametrize("a, b", [("bf16", "fp16"), ("bf16", "autocast"), ("dynamic-int8", "accuracy-int8"),
                                  ("static-int8", "weight-only-int8"), ("magnitude-prune", "structured-prune"),
                                  ("sdpa", "bf16-attention")])
def test_passes_of_one_group_refuse_each_other(a, b):
    assert conflicts([a, b]) and conflicts([b, a])


def test_passes_of_different_groups_combine():
    assert conflicts(["structured-prune", "bf16-attention", "dynamic-int8", "threads"]) == []


@pytest.mark.slow
class TestCompiledPasses:
    """Passes that compile with Inductor (tens of seconds each on 2 cores)."""

    def test_torch_compile_matches_eager(self):
        freezing = torch._inductor.config.freezing
        new, results, acc = run("mlp-tiny", ["torch-compile"])
        assert results[0].applied and results[0].apply_s > 0 and results[0].details["freezing"] is True
        assert acc.max_abs_err < 1e-4
        assert torch._inductor.config.freezing is freezing  # patched around the model's calls, not for the process
        assert new.traits.compiled == "inductor"
        assert "already compiled" in optimizers.get("torch-compile").check(new, CPU)

    @int8_needs_vnni
    def test_static_int8_pt2e(self):
        new, results, acc = run("mlp-tiny", ["static-int8"])
        assert results[0].applied and acc.cosine > 0.99
        assert new.traits.int8 == "static" and isinstance(new.traits.compile_target, nn.Module)
        assert new.traits.compile_target not in list(new.module.modules())  # its weights do not count twice

    @int8_needs_vnni
    def test_static_int8_then_torch_compile_runs_inductor_int8_kernels(self):
        new, results, acc = run("bert-tiny", ["static-int8", "torch-compile"])
        assert [r.applied for r in results] == [True, True], results
        assert "int8" in results[1].details["compiled"]
        # the float weights the int8 graph no longer reads are gone (the embeddings stay fp32)
        from optimizers.optimize import size_bytes
        assert size_bytes(new.module) < size_bytes(profiler.load_model("bert-tiny").module) - 1_000_000
        # judged on held-out inputs the calibration never saw (0.99839 measured; it was 0.9999 when the check ran on
        # the calibration inputs themselves)
        assert acc.cosine >= 0.995 and acc.top1_agreement >= 0.99
        with torch.profiler.profile() as prof:  # Inductor lowered the q/dq graph to fused oneDNN int8 linears
            outputs(new, CPU)
        names = {e.key for e in prof.key_averages()}
        assert "onednn::qlinear_pointwise" in names and "aten::linear" not in names


@pytest.mark.parametrize("passes, low, high, passed", [
    (["bf16"], 0.999, 1.0, True),
    (["weight-only-int8"], 0.999, 1.0, True),
    # real MiniLM weights: dynamic activation quantization costs embedding cosine on every sentence (worst 0.976
    # with 7-bit activations and per-channel weights, 0.934 per-tensor; 0.992 with the 8 bits a VNNI CPU computes
    # exactly), below the default tolerance; random-weight models hide this, which is why minilm is here
    (["dynamic-int8"], None, None, False),
])
def test_real_minilm_sentence_embeddings(passes, low, high, passed):
    from optimizers.quantize import full_range_exact

    if low is None:
        low, high = (0.99, 0.999) if full_range_exact() else (0.90, 0.99)
    _, results, acc = run("minilm", passes, batch_size=8, seq_len=32)
    assert results[0].applied and acc.kind == "sentence-embedding"
    assert low <= acc.cosine <= high and acc.passed is passed
