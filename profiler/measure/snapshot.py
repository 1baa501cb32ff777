"""CUDA memory snapshots of a training step (torch.cuda.memory._record_memory_history): written for PyTorch's own
memory viewer (https://pytorch.org/memory_viz, or torch/cuda/_memory_viz.py), and read back only with an unpickler
that refuses every global: a snapshot is a pickle, and a pickle that names a class or a function can run code.
"""
from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch

from profiler.schema import ModelRunError


class _DataOnly(pickle.Unpickler):
    """Builds dicts, lists, strings and numbers; any global (a class, a function) is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it names {module}.{name}: a memory snapshot holds plain data only, so this "
                                     "file is not one (or was tampered with); it was not loaded")


def read_snapshot(path: str | Path) -> dict:
    """A snapshot as plain data; ModelRunError in one line for anything else."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = _DataOnly(f).load()
    except OSError as exc:
        raise ModelRunError(f"cannot read {p}: {exc.strerror or exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ModelRunError(f"{p.name} refused: {exc}") from None
    if not isinstance(data, dict) or "segments" not in data:
        raise ModelRunError(f"{p.name} is not a CUDA memory snapshot (no 'segments')")
    return data


def summary(snapshot: dict) -> dict[str, float]:
    """Reserved and allocated bytes, blocks and the largest block, from a snapshot's segments."""
    segments = snapshot.get("segments") or []
    blocks = [b for s in segments for b in (s.get("blocks") or [])]
    live = [b for b in blocks if b.get("state") == "active_allocated"]
    return {"reserved_bytes": float(sum(s.get("total_size", 0) for s in segments)),
            "allocated_bytes": float(sum(b.get("size", 0) for b in live)), "blocks": float(len(live)),
            "largest_block_bytes": float(max((b.get("size", 0) for b in live), default=0))}


def take_snapshot(step: Callable[[], object], path: str | Path, device: torch.device) -> dict[str, float]:
    """Run `step` with CUDA memory history recorded and write the snapshot to `path`; its summary."""
    if device.type != "cuda":
        raise ModelRunError("a memory snapshot records the CUDA caching allocator: it needs a CUDA GPU (on a CPU the "
                            "memory timeline by category is taken instead)")
    torch.cuda.memory._record_memory_history(max_entries=100_000)
    try:
        step()
        torch.cuda.synchronize(device)
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    with open(path, "wb") as f:
        pickle.dump(snapshot, f)
    return summary(snapshot)
