"""Passes say what they made of a model in its traits, checks read them, and the runner's graph capture uses the
exported program a model was loaded from; the compiler setting a compile needs is scoped to its calls."""
import dataclasses

import pytest
import torch
from testdata import needs_cuda
from torch import nn

import profiler
from optimizers import apply_pipeline, base
from optimizers.compile import UnderInductorConfig
from profiler.measure import graph
from profiler.models.loaded import ModelTraits, RunOptions

CPU = torch.device("cpu")


@pytest.mark.parametrize("passes, traits", [
    (["dynamic-int8"], {"int8": "dynamic"}),
    (["weight-only-int8"], {"int8": "weight-only"}),
    (["autocast"], {"autocast": "bfloat16"}),
    (["bf16"], {}),
])
def test_passes_record_their_traits_and_leave_the_original_as_it_was(passes, traits):
    loaded = profiler.load_model("mlp-tiny")
    new, results = apply_pipeline(loaded, passes, CPU)
    assert results[0].applied, results
    assert new.traits == ModelTraits(**traits)
    assert loaded.traits == ModelTraits() and loaded.run_options == RunOptions()


def test_checks_read_the_traits_not_the_module():
    loaded = profiler.load_model("mlp-tiny")  # a plain float model: only its traits say otherwise
    int8 = dataclasses.replace(loaded, traits=ModelTraits(int8="static"))
    assert "already int8-quantized" in base.get("bf16").check(int8, CPU)
    autocast = dataclasses.replace(loaded, traits=ModelTraits(autocast="bfloat16"))
    assert "autocast would feed them" in base.get("dynamic-int8").check(autocast, CPU)
    assert base.get("autocast").check(autocast, CPU) == "the model already runs under autocast"
    compiled = dataclasses.replace(loaded, traits=ModelTraits(compiled="inductor"))
    assert base.get("torch-compile").check(compiled, CPU) == "the model is already compiled (inductor)"
    target = dataclasses.replace(loaded, traits=ModelTraits(compile_target=nn.Identity()))
    assert "use torch-compile" in base.get("torchscript-freeze").check(target, CPU)
    assert base.get("bf16").check(loaded, CPU) is None


def test_a_pass_drops_the_exported_graph_and_a_run_option_pass_keeps_it():
    loaded = dataclasses.replace(profiler.load_model("mlp-tiny"), traits=ModelTraits(exported="the program"))
    assert base.outcome(loaded, details={"x": 1}).loaded.traits.exported is None
    target = dataclasses.replace(loaded, traits=ModelTraits(compile_target="the q/dq graph"))
    # changed in place, the module is still what the target was made from; wrapped, compiling the target would
    # lose the wrapper
    assert base.outcome(target, target.module).loaded.traits.compile_target == "the q/dq graph"
    assert base.outcome(target, nn.Sequential(target.module)).loaded.traits.compile_target is None
    pinned = base.get("pinned-memory").apply(loaded, CPU)  # the check refuses it on the CPU; apply shows the effect
    assert pinned.loaded.run_options == RunOptions(pin_memory=True) and pinned.details == {"pin_memory": True}
    assert pinned.loaded.traits.exported == "the program" and pinned.loaded.module is loaded.module


def test_a_loaded_pt2_carries_its_program_and_graph_capture_uses_it(tmp_path):
    m = nn.Sequential(nn.Linear(8, 4), nn.Tanh()).eval()
    torch.export.save(torch.export.export(m, (torch.randn(2, 8),)), str(tmp_path / "m.pt2"))
    loaded = profiler.load_model(str(tmp_path / "m.pt2"))
    assert isinstance(loaded.traits.exported, torch.export.ExportedProgram)
    assert not hasattr(loaded.module, "exported_program")
    # given another model's program, capture takes that one: it does not re-export the module
    other = torch.export.export(nn.ReLU(), (torch.randn(2, 8),))
    captured = graph.capture(loaded.module, loaded.args, loaded.kwargs, exported=other)
    ops = [str(n.target) for n in captured.gm.graph.nodes if n.op == "call_function"]
    assert ops == ["aten.relu.default"]


def test_inductor_config_is_patched_only_during_the_compiled_models_calls():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(torch._inductor.config.freezing)
            return x + 1

    before = torch._inductor.config.freezing
    wrapped = UnderInductorConfig(Probe(), {"freezing": not before})
    assert torch.equal(wrapped(torch.zeros(2)), torch.ones(2))
    assert seen == [not before] and torch._inductor.config.freezing is before


@needs_cuda
@pytest.mark.gpu
def test_run_option_passes_reach_the_runner_on_a_gpu():
    cuda, loaded = torch.device("cuda"), profiler.load_model("mlp-tiny")
    config = profiler.ProfileConfig(device="cuda", warmup=1, repeats=3, min_time_s=0, profile_iters=1, graph=False)
    uploads = lambda run: sum(t.bytes for t in run.transfers if t.direction == "H2D")
    pinned, results = apply_pipeline(loaded, ["pinned-memory"], cuda)
    assert results[0].applied and pinned.run_options == RunOptions(pin_memory=True)
    assert uploads(profiler.profile(pinned, config)) > 0  # pinned, but still uploaded every call
    resident, results = apply_pipeline(loaded, ["pinned-memory", "resident-inputs"], cuda)
    assert [r.applied for r in results] == [True, True]
    assert resident.run_options == RunOptions(pin_memory=True, inputs_on_device=True)
    assert uploads(profiler.profile(resident, config)) == 0


@needs_cuda
@pytest.mark.gpu
def test_torch_compile_on_a_gpu_patches_nothing_and_matches_eager():
    from optimizers.optimize import outputs

    cuda, loaded = torch.device("cuda"), profiler.load_model("mlp-tiny")
    freezing = torch._inductor.config.freezing
    new, results = apply_pipeline(loaded, ["torch-compile"], cuda)
    assert results[0].applied and "freezing" not in results[0].details  # freezing is for CPU inference only
    assert new.traits.compiled == "inductor" and new.module.config == {}
    assert torch.allclose(outputs(new, cuda).cpu(), outputs(loaded, cuda).cpu(), atol=1e-4)
    assert torch._inductor.config.freezing is freezing
