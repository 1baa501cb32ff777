"""What loading and optimizer passes made of a model, said explicitly: its traits (int8, autocast, compiled, the graph
it came from) and how the runner must feed it (run options). Checks, graph capture and the runner read these instead
of attributes hung on the module."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class RunOptions:
    """How the runner feeds the model, set by passes (the profile config may ask for the same)."""

    pin_memory: bool = False  # upload inputs from page-locked host memory (GPU)
    inputs_on_device: bool = False  # keep inputs resident on the device between inferences
    cache: str = ""  # the KV cache a generation pass needs ("static"); "" keeps the generate config's
