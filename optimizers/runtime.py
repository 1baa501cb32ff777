"""Runtime: intra-op thread count, CUDA graphs, 2:4 semi-structured sparsity (GPU, compute capability >= 8.0)."""
from __future__ import annotations

import torch
from torch import nn

from profiler.measure.session import map_tensors

from .base import COMPILE, Pass, outcome, register


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or torch.get_num_threads()
    except ImportError:
        return torch.get_num_threads()


class WithThreads(nn.Module):
    """Runs the wrapped model with a given intra-op thread count, restoring the previous one after each call."""

    def __init__(self, inner: nn.Module, threads: int):
        super().__init__()
        self.inner, self.threads = inner, threads

    def forward(self, *args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self.inner(*args, **kwargs)
        finally:
            torch.set_num_threads(before)


def _threads_check(loaded, device):
    n = physical_cores()
    if torch.get_num_threads() == n:
        return f"already using {n} threads, one per physical core"
    return None


def _threads_apply(loaded, device):
    n = physical_cores()
    return outcome(loaded, WithThreads(loaded.module, n), {"threads": n, "before": torch.get_num_threads()})


def _graphs_apply(loaded, device):
    compiled = torch.compile(loaded.module, mode="reduce-overhead")
    with torch.no_grad():
        for _ in range(3):  # CUDA graphs are recorded after a few warm-up calls
            args, kwargs = map_tensors((loaded.args, loaded.kwargs), lambda t: t.to(device))
            compiled(*args, **kwargs)
    return outcome(loaded, compiled, traits={"compiled": "cuda-graphs"})


def _sparse_check(loaded, device):
    if device.type != "cuda":
        return "2:4 sparsity needs an NVIDIA GPU"
    major, _ = torch.cuda.get_device_capability(device)
    if major < 8:
        return f"2:4 sparse tensor cores need compute capability 8.0 or newer, this GPU has {major}.x"
    if not any(isinstance(m, nn.Linear) for m in loaded.module.modules()):
        return "no nn.Linear layers"
    return None


def _sparse_apply(loaded, device):
    from torch.sparse import to_sparse_semi_structured

    done = 0
    for m in loaded.module.modules():
        if isinstance(m, nn.Linear) and m.in_features % 64 == 0 and m.out_features % 64 == 0:
            w = m.weight.detach().half()
            groups = w.reshape(-1, 4)
            keep = groups.abs().topk(2, dim=1).indices
            mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True).reshape(w.shape)
            m.weight = nn.Parameter(to_sparse_semi_structured(w * mask))
            if m.bias is not None:
                m.bias = nn.Parameter(m.bias.detach().half())
            done += 1
    args, kwargs = map_tensors((loaded.args, loaded.kwargs), lambda t: t.half() if t.is_floating_point() else t)
    return outcome(loaded, details={"layers": done}, args=args, kwargs=kwargs,
                   warning="2:4 pruning changes the model: fine-tune to recover accuracy")


register(Pass("threads", "runtime", "Run with one intra-op thread per physical core (hyper-threads usually slow "
              "BLAS down).", ("cpu",), _threads_apply, _threads_check))
register(Pass("cuda-graphs", "runtime", "Capture the forward pass as CUDA graphs (torch.compile mode="
              "'reduce-overhead'): one launch instead of hundreds.", ("cuda",), _graphs_apply, None, group=COMPILE))
register(Pass("sparsity-2to4", "runtime", "2:4 semi-structured sparsity on Linear weights for sparse tensor cores "
              "(GPU, compute capability >= 8.0), fp16.", ("cuda",), _sparse_apply, _sparse_check, group="pruning"))
