"""Compilation: torch.compile (Inductor, with freezing on the CPU) and TorchScript trace + freeze +
optimize_for_inference."""

from __future__ import annotations

import torch
from torch import nn

from .base import COMPILE, Pass, outcome, register


def _not_compiled(loaded, device):
    if isinstance(loaded.module, torch.jit.ScriptModule):
        return "the model is already TorchScript"
    if loaded.traits.compiled:
        return f"the model is already compiled ({loaded.traits.compiled})"
    return None


def _torchscript_check(loaded, device):
    if loaded.traits.compile_target is not None:
        return "this int8 graph is lowered by Inductor; use torch-compile"
    return _not_compiled(loaded, device)


class UnderInductorConfig(nn.Module):
    """Calls a compiled model with Inductor's global config patched, and restores it after each call.

    Dynamo's pre-grad passes read the global config, not torch.compile's `options`: without freezing set there the
    int8 weight-prepack patterns never run, and Inductor stops at onednn.qlinear_prepack (torch 2.13). Patching
    around every call, not only the first, means a recompilation (another grad mode, another shape) sees the same
    setting, while nothing else in the process does."""

    def __init__(self, compiled: nn.Module, config: dict):
        super().__init__()
        self.compiled, self.config = compiled, dict(config)

    def forward(self, *args, **kwargs):
        with torch._inductor.config.patch(self.config):
            return self.compiled(*args, **kwargs)


def _compile_apply(loaded, device):
    options = {"freezing": True} if device.type == "cpu" else {}  # fold weights into the graph: CPU inference only
    # a model that offers a graph meant for the compiler (static int8's q/dq graph) is compiled from that graph
    target = loaded.traits.compile_target
    compiled = UnderInductorConfig(torch.compile(target if target is not None else loaded.module, options=options),
                                   options)
    with torch.inference_mode():  # the grad mode the profiler times under, so timing does not compile again
        compiled(*loaded.args, **loaded.kwargs)  # compile now: apply time holds it, steady-state timing does not
    details = {"backend": "inductor", **options}
    if target is not None:
        details["compiled"] = "the int8 q/dq graph (Inductor lowers it to fused int8 kernels)"
    return outcome(loaded, compiled, details, traits={"compiled": "inductor", "compile_target": None})


def _torchscript_apply(loaded, device):
    """The seeds' recipe. HF models are switched to tuple outputs first (dict outputs do not trace)."""
    module = loaded.module
    config = getattr(module, "config", None)
    if config is not None:
        config.return_dict = False
        config.torchscript = True
    with torch.no_grad():
        if loaded.kwargs:
            traced = torch.jit.trace(module, example_kwarg_inputs=dict(loaded.kwargs), strict=False, check_trace=False)
        else:
            traced = torch.jit.trace(module, loaded.args, strict=False, check_trace=False)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        frozen(*loaded.args, **loaded.kwargs)  # the profiling executor specialises on the first calls
        frozen(*loaded.args, **loaded.kwargs)
    return outcome(loaded, frozen, traits={"compiled": "torchscript"})


register(Pass("torch-compile", "compilation & fusion", "torch.compile with Inductor (freezing on the CPU): fuses "
              "element-wise chains and picks kernels; compile time is reported apart.", ("cpu", "cuda"),
              _compile_apply, _not_compiled, group=COMPILE))
register(Pass("torchscript-freeze", "compilation & fusion", "TorchScript trace + freeze + optimize_for_inference "
              "(handles Hugging Face dict outputs by switching to tuples).", ("cpu", "cuda"), _torchscript_apply,
              _torchscript_check, group=COMPILE))
