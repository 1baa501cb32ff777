"""Memory and layout: channels_last for conv nets; pinned memory + non_blocking uploads and resident inputs on a GPU
(the T_trans passes)."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from profiler.measure.session import map_tensors

from .base import Outcome, Pass, outcome, register


def _cl_check(loaded, device):
    if not any(isinstance(m, nn.Conv2d) for m in loaded.module.modules()):
        return "no nn.Conv2d layers: channels_last only helps convolutions"
    return None


def _cl_apply(loaded, device):
    to_cl = lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
    module = loaded.module.to(memory_format=torch.channels_last)
    return outcome(loaded, module, args=map_tensors(loaded.args, to_cl), kwargs=map_tensors(loaded.kwargs, to_cl))


def _option(key: str, what: str):
    """A pass that switches on one of the runner's RunOptions; the model itself, and the graph it came from, stay."""
    def check(loaded, device):
        return f"{what} is already on" if getattr(loaded.run_options, key) else None

    def apply(loaded, device):
        run_options = dataclasses.replace(loaded.run_options, **{key: True})
        return Outcome(dataclasses.replace(loaded, run_options=run_options), {key: True})

    return check, apply


_pin_check, _pin_apply = _option("pin_memory", "pinned memory")
_res_check, _res_apply = _option("inputs_on_device", "keeping inputs on the device")
register(Pass("channels-last", "memory & layout", "NHWC (channels_last) memory layout for conv nets: the layout "
              "oneDNN and cuDNN convolutions prefer.", ("cpu", "cuda"), _cl_apply, _cl_check, group="layout"))
register(Pass("pinned-memory", "memory & layout", "Upload inputs from pinned (page-locked) host memory with "
              "non_blocking=True: faster, asynchronous H2D copies.", ("cuda",), _pin_apply, _pin_check))
register(Pass("resident-inputs", "memory & layout", "Keep inputs resident on the GPU between inferences: no per-call "
              "upload (when the data is produced on the device).", ("cuda",), _res_apply, _res_check))
