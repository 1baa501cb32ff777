"""Several ranks of one training job on this machine: DistributedDataParallel over gloo (CPU), one process per rank
(torch.multiprocessing), each recording its own trace; the traces are imported together, so the rank analysis
(per-rank step, communication and its exposed part, the collectives' transfer and waiting, stragglers) applies.
One rank can be slowed on purpose (`slow_rank`, `slow_ms` per step) to see what a straggler does to the others.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.profiler import ProfilerActivity, profile, schedule

from profiler.schema import ModelRunError, ProfileRun, TrainConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Slowed(torch.nn.Module):
    """The rank's DDP model, `delay_s` slower per forward (a straggler on purpose)."""

    def __init__(self, inner: torch.nn.Module, delay_s: float):
        super().__init__()
        self.inner, self.delay_s = inner, delay_s

    def forward(self, *args, **kwargs):
        time.sleep(self.delay_s)
        return self.inner(*args, **kwargs)


def _worker(rank: int, world: int, spec: str, config: TrainConfig, out: str, port: int, slow_rank: int,
            slow_ms: float) -> None:
    from dataclasses import replace

    from torch.nn.parallel import DistributedDataParallel

    from profiler.measure import train as tr
    from profiler.models.loading import load_model

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))  # ranks share the cores
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        loaded = load_model(spec, batch_size=config.batch_size or None)
        rank_config = replace(config, seed=config.seed + rank, device="cpu",  # each rank its own samples
                              batch_size=config.batch_size or loaded.batch_size or 8)
        parts = tr.parts_for(loaded, rank_config)
        ddp = DistributedDataParallel(parts.module)
        runner = _Slowed(ddp, slow_ms / 1e3) if rank == slow_rank else ddp
        stepper = tr._Stepper(replace(parts, runner=runner), rank_config, torch.device("cpu"))
        path = os.path.join(out, f"rank{rank}.pt.trace.json.gz")
        with profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=0, warmup=config.warmup,
                                                                         active=config.steps),
                     on_trace_ready=lambda p: p.export_chrome_trace(path)) as prof:
            for i in range(config.warmup + config.steps):
                stepper.step(i)
                prof.step()
    finally:
        dist.destroy_process_group()


def train_ranks(spec: str, config: TrainConfig, world: int = 2, slow_rank: int = -1, slow_ms: float = 0.0,
                progress=None) -> ProfileRun:
    """Train `spec` with DDP over gloo in `world` processes and import their traces as one run (not yet saved)."""
    from profiler.traces.importer import import_trace

    say = progress or (lambda stage, frac: None)
    if world < 2:
        raise ModelRunError("a distributed run needs 2 ranks or more")
    out = tempfile.mkdtemp(prefix="oplens-ranks-")
    say(f"training on {world} ranks (gloo)", 0.1)
    try:
        mp.spawn(_worker, args=(world, spec, config, out, _free_port(), slow_rank, slow_ms), nprocs=world,
                 join=True)
    except mp.ProcessRaisedException as exc:
        last = [line for line in str(exc).strip().splitlines() if line.strip()][-1]
        raise ModelRunError(f"a rank failed: {last}") from None
    except mp.ProcessExitedException as exc:
        raise ModelRunError(f"a rank exited: {exc}") from None
    say("analysing the ranks' traces", 0.9)
    files = sorted(Path(out).glob("rank*.pt.trace.json.gz"))
    run = import_trace(files)
    run.model.name, run.model.spec, run.model.task = f"{spec} x{world} ranks", spec, "training (DDP, gloo)"
    run.label = f"train: {spec} on {world} ranks"
    run.notes.insert(0, f"DistributedDataParallel over gloo, {world} processes on this machine, batch "
                        f"{config.batch_size or 'the model default'} per rank, {config.steps} steps after "
                        f"{config.warmup} warm-up" + (f"; rank {slow_rank} slowed by {slow_ms:g} ms per step on "
                                                     "purpose" if slow_rank >= 0 and slow_ms else ""))
    return run
