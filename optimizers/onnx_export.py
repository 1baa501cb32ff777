"""A model exported to ONNX for another runtime: its inputs and outputs as flat tensor lists (a pytree Signature),
the exporters tried in turn, and the check that the file gives PyTorch's outputs.

torch.onnx's TorchScript exporter goes first (its node names carry module paths, and it is the faster), the dynamo
exporter when that fails; either file must reproduce PyTorch's outputs on the example inputs in the target runtime
before it is used. Batch (and the sequence of token inputs) are dynamic axes, so other sizes run without exporting
again.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils import _pytree as pytree

from .base import PassNotApplicable

SCOPE = "model"  # the exporting wrapper's attribute: the scope every exported node name starts with
EXPORTERS = ("torchscript", "dynamo")  # tried in this order
MIN_EXPORT_COSINE = 0.999  # the export must give PyTorch's outputs (float32: cosine ~1.0) before it is used


# ---------------------------------------------------------------- quiet libraries

@contextlib.contextmanager
def quiet():
    """Exporter and runtime chatter off the console: Python warnings, the quantizer's logging advice, and what C++
    writes to file descriptors 1 and 2 (the TorchScript exporter prints its whole graph when an op fails)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    previous = logging.root.manager.disable
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            logging.disable(previous)


# ---------------------------------------------------------------- inputs and outputs as flat tensor lists

@dataclass
class Signature:
    """How the model's inputs and outputs map to the ONNX graph's: pytree specs, the non-tensor leaves kept as
    constants, the ONNX names and dtypes of the tensor leaves."""

    in_spec: Any
    in_constants: list  # per input leaf: None for a tensor (an ONNX input), (value,) for a constant
    input_names: list[str]
    input_dtypes: list[torch.dtype]
    out_spec: Any
    out_constants: list

    def arrays(self, args: tuple, kwargs: dict) -> dict[str, np.ndarray]:
        """The ONNX inputs, by name, for a call with these args and kwargs."""
        leaves, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        if spec != self.in_spec:
            want, got = pytree.treespec_pprint(self.in_spec), pytree.treespec_pprint(spec)
            raise ValueError(f"this ONNX model was exported for inputs structured as {want}, and was called with {got}")
        tensors = [x for x, c in zip(leaves, self.in_constants) if c is None]
        return {n: t.detach().to("cpu", d).contiguous().numpy() for n, t, d in
                zip(self.input_names, tensors, self.input_dtypes)}

    def outputs(self, arrays: list[np.ndarray]) -> Any:
        """The model's own output structure from the runtime's output arrays."""
        it = iter(arrays)
        leaves = [torch.from_numpy(np.asarray(next(it))) if c is None else c[0] for c in self.out_constants]
        return pytree.tree_unflatten(leaves, self.out_spec)


class _Flat(nn.Module):
    """The model as a function of its input tensors alone, returning its output tensors as a flat tuple: what both
    exporters are given, so input and output order is ours, not an exporter's."""

    def __init__(self, model: nn.Module, signature: Signature):
        super().__init__()
        setattr(self, SCOPE, model)
        self.signature = signature

    def forward(self, *tensors):
        it = iter(tensors)
        leaves = [next(it) if c is None else c[0] for c in self.signature.in_constants]
        args, kwargs = pytree.tree_unflatten(leaves, self.signature.in_spec)
        out = getattr(self, SCOPE)(*args, **kwargs)
        return tuple(x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor))


def _name(path: tuple) -> str:
    """An ONNX input name from a pytree key path: ((), {"input_ids": t}) -> input_ids; (x, y) -> arg0, arg1."""
    keys = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path[1:]]
    text = "_".join(keys) if path and getattr(path[0], "idx", None) == 1 else "arg" + "_".join(keys)
    return re.sub(r"[^A-Za-z0-9_]", "_", text) or "input"


def signature_of(args: tuple, kwargs: dict, reference: Any) -> Signature:
    """The Signature of a call with these inputs, whose outputs look like `reference`."""
    paths, in_spec = pytree.tree_flatten_with_path((tuple(args), dict(kwargs)))
    names, dtypes, constants = [], [], []
    for path, x in paths:
        constants.append(None if isinstance(x, torch.Tensor) else (x,))
        if isinstance(x, torch.Tensor):
            names.append(_name(path))
            dtypes.append(x.dtype)
    names = [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]
    out_leaves, out_spec = pytree.tree_flatten(reference)
    return Signature(in_spec, constants, names, dtypes, out_spec,
                     [None if isinstance(x, torch.Tensor) else (x,) for x in out_leaves])


def dynamic_dims(tensors: list[torch.Tensor], batch: int, seq: int) -> list[dict[int, str]]:
    """Per input: its batch dimension (dim 0 of the example's batch size) and, for token inputs (integer [batch,
    seq, ...]), its sequence dimension, named so that all inputs share them."""
    out = []
    for t in tensors:
        dims = {}
        if t.dim() >= 1 and t.shape[0] == batch:
            dims[0] = "batch"
        if t.dim() >= 2 and not t.is_floating_point() and seq and t.shape[1] == seq:
            dims[1] = "seq"
        out.append(dims)
    return out


# ---------------------------------------------------------------- export

class Scratch:
    """A temporary folder owned by whoever holds this object: removed when the last holder is garbage-collected."""

    def __init__(self, prefix: str = "oplens-onnx-"):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.path), True)


@dataclass
class Exported:
    """An ONNX file of the model (in a folder the holders own), how it was made, and its signature."""

    path: Path
    scratch: Scratch
    signature: Signature
    exporter: str  # "torchscript" or "dynamo"
    opset: int
    nodes: int
    dynamic: dict[str, dict[int, str]] = field(default_factory=dict)
    export_s: float = 0.0

    def details(self) -> dict:
        axes = sorted({axis for dims in self.dynamic.values() for axis in dims.values()})
        return {"exporter": f"torch.onnx ({'TorchScript' if self.exporter == 'torchscript' else 'dynamo'})",
                "opset": self.opset, "onnx_nodes": self.nodes, "onnx_mb": round(self.path.stat().st_size / 2**20, 1),
                "dynamic_axes": ", ".join(axes) or "none", "export_s": round(self.export_s, 1)}


@contextlib.contextmanager
def kept_modes(module: nn.Module):
    """Every submodule's train/eval mode as it was before: the exporters switch the model they are given to eval and
    back to that model's own mode, which a fresh wrapper would spread to all of its submodules as training."""
    modes = [(m, m.training) for m in module.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _first_line(exc: BaseException) -> str:
    """The line of an exporter's error that says what failed (the dynamo exporter puts it under a summary heading)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    summary = text.split("## Exception summary", 1)
    lines = [ln.strip() for ln in (summary[1] if len(summary) > 1 else text).splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    return re.sub(r"^<class '[\w.]+'>: ", "", line)[:200]


def _export_with(exporter: str, flat: _Flat, tensors: tuple, dims: list[dict[int, str]], names: list[str],
                 outputs: int, path: Path) -> None:
    common = {"input_names": names, "output_names": [f"output_{i}" for i in range(outputs)], "verbose": False}
    if exporter == "torchscript":
        torch.onnx.export(flat, tensors, str(path), dynamo=False, **common,
                          dynamic_axes={n: d for n, d in zip(names, dims) if d})
    else:
        auto = torch.export.Dim.AUTO
        torch.onnx.export(flat, tensors, str(path), dynamo=True, external_data=False, **common,
                          dynamic_shapes=(tuple({i: auto for i in d} for d in dims),))


def _agrees(got: list[np.ndarray], want: list[torch.Tensor]) -> str:
    """Why the runtime's outputs are not PyTorch's on the same inputs ("" when they are)."""
    if len(got) != len(want):
        return f"{len(got)} outputs instead of {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g = torch.from_numpy(np.asarray(g))
        if tuple(g.shape) != tuple(w.shape):
            return f"output {i} has shape {list(g.shape)} instead of {list(w.shape)}"
        if w.is_floating_point() and w.numel() and not torch.allclose(g.to(w.dtype), w, atol=1e-6):
            cos = float(nn.functional.cosine_similarity(g.double().flatten(), w.double().flatten(), dim=0, eps=1e-12))
            if not cos >= MIN_EXPORT_COSINE:
                return f"output {i} differs from PyTorch's (cosine {cos:.4f})"
    return ""


def export_onnx(loaded, run: Callable[[Path, dict[str, np.ndarray]], list[np.ndarray]]) -> Exported:
    """The model exported to ONNX and checked: `run(path, inputs)` runs a file in the target runtime and must give
    PyTorch's outputs on the example inputs. PassNotApplicable, in one line, when no exporter gives a usable file."""
    module, args, kwargs = loaded.module, loaded.args, loaded.kwargs
    with torch.no_grad():
        reference = module(*args, **kwargs)
    sig = signature_of(args, kwargs, reference)
    tensors = tuple(x for x in pytree.tree_leaves((tuple(args), dict(kwargs))) if isinstance(x, torch.Tensor))
    want = [x for x in pytree.tree_leaves(reference) if isinstance(x, torch.Tensor)]
    if not tensors or not want:
        raise PassNotApplicable("ONNX export needs tensor inputs and tensor outputs; this model has "
                                + ("no tensor inputs" if not tensors else "no tensor outputs"))
    dims = dynamic_dims(list(tensors), loaded.batch_size, loaded.seq_len)
    scratch, flat, failures = Scratch(), _Flat(module, sig), []
    inputs = sig.arrays(args, kwargs)
    for exporter in EXPORTERS:
        path, t0 = scratch.path / f"{exporter}.onnx", time.perf_counter()
        try:
            with quiet(), torch.no_grad(), kept_modes(module):
                _export_with(exporter, flat.eval(), tensors, dims, sig.input_names, len(want), path)
            seconds = time.perf_counter() - t0
            why = _agrees(run(path, inputs), want)
        except Exception as exc:  # noqa: BLE001 - an exporter failing on this model: try the next, keep its reason
            why = _first_line(exc)
        if not why:
            import onnx

            proto = onnx.load(str(path), load_external_data=False)
            opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
            return Exported(path, scratch, sig, exporter, opset, len(proto.graph.node),
                            {n: d for n, d in zip(sig.input_names, dims) if d}, seconds)
        failures.append(f"{exporter} exporter: {why}")
    raise PassNotApplicable("the model does not export to ONNX (" + "; ".join(failures) + ")")
