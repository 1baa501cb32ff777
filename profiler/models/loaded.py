"""The loaded model (LoadedModel: a runnable module with its example inputs), and what loading and optimizer passes
made of it, said explicitly: its traits (int8, autocast, compiled, the graph
it came from) and how the runner must feed it (run options). Checks, graph capture and the runner read these instead
of attributes hung on the module."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from torch import nn

from profiler.schema import Graph, ModelInfo, OpStat

INT8_KINDS = ("dynamic", "static", "weight-only")


@dataclass(frozen=True)
class ModelTraits:
    """Facts about a LoadedModel's module that its type alone does not tell."""

    int8: str = ""  # "", or one of INT8_KINDS: how its Linear layers were quantized
    autocast: str = ""  # the dtype it runs under torch.autocast ("bfloat16", "float16"), "" when it does not
    compiled: str = ""  # the compiler that made it ("inductor", "torchscript", "cuda-graphs"), "" when eager
    # a graph offered to the compiler instead of the module (static int8's q/dq graph, which Inductor lowers to fused
    # int8 kernels); kept here, off the module tree, so its weights do not count twice in size and state_dict
    compile_target: Any = None
    # the torch.export program the model was loaded from (.pt2): graph capture uses it instead of re-exporting; a pass
    # that changes the model drops it, since it no longer describes the model
    exported: Any = None

    def __post_init__(self):
        if self.int8 and self.int8 not in INT8_KINDS:
            raise ValueError(f"int8 trait '{self.int8}' is not one of {', '.join(INT8_KINDS)}")


class RuntimeOps(NamedTuple):
    """What a runtime's own profiler measured over some inferences, per inference."""

    ops: list[OpStat]  # per op type: calls, times (ms) and FLOPs per inference
    graph: Graph | None  # the graph the runtime executed, with per-node times; None when it cannot say
    notes: list[str]  # for the run: how the figures were taken
    # wall time of one profiled inference (its profiler on), which the ops' times add up against; 0: not known,
    # and the run's own profiled iterations stand in
    wall_ms: float = 0.0
    runtime: str = ""  # which runtime ran the model ("onnxruntime", "openvino"): recorded in the run's versions


@runtime_checkable
class RuntimeProfiler(Protocol):
    """A module that runs outside PyTorch (an ONNX Runtime session, an OpenVINO compiled model) offers one of these
    as its `oplens_runtime` attribute. torch.profiler sees such a model as one opaque call, so the profiler takes the
    run's per-op figures and graph from the runtime's own profiler instead."""

    def profile_ops(self, args: tuple, kwargs: dict, iterations: int) -> RuntimeOps:
        """Run the model on these inputs under the runtime's profiler, at least `iterations` times after a warm-up;
        what it measured, per inference."""
        ...


def runtime_of(module: nn.Module) -> RuntimeProfiler | None:
    """The module's own runtime profiler (its `oplens_runtime`), or None for a model PyTorch runs."""
    runtime = getattr(module, "oplens_runtime", None)
    return runtime if isinstance(runtime, RuntimeProfiler) else None


@dataclass(frozen=True)
class RunOptions:
    """How the runner feeds the model, set by passes (the profile config may ask for the same)."""

    pin_memory: bool = False  # upload inputs from page-locked host memory (GPU)
    inputs_on_device: bool = False  # keep inputs resident on the device between inferences
    cache: str = ""  # the KV cache a generation pass needs ("static"); "" keeps the generate config's


@dataclass
class LoadedModel:
    """A runnable model plus the example inputs it is profiled with."""

    module: nn.Module
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    info: ModelInfo = None  # type: ignore[assignment]
    batch_size: int = 1
    seq_len: int = 0
    traits: ModelTraits = field(default_factory=ModelTraits)  # what loading and passes made of it
    run_options: RunOptions = field(default_factory=RunOptions)  # how the runner feeds it, set by passes
    # a training factory's (module, batch, loss): loss(output, target); the target of the example batch, or a
    # dataset of (inputs, target) items instead of one batch (profiler.measure.train)
    loss: Any = None
    target: Any = None
    dataset: Any = None

    def __call__(self):
        return self.module(*self.args, **self.kwargs)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(parameter count, bytes of parameters and buffers)."""
    params = list(module.parameters())
    size = sum(p.numel() * p.element_size() for p in params) + sum(
        b.numel() * b.element_size() for b in module.buffers()
    )
    return sum(p.numel() for p in params), size
