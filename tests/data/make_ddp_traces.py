"""Record a real two-rank data-parallel trace (one file per rank) for the multi-rank import tests.

    python tests/data/make_ddp_traces.py OUT_DIR [--device cuda|cpu]

Two processes, gloo backend (it also reduces CUDA tensors, so both ranks can share one GPU, which NCCL refuses),
DDP training of a small MLP; rank 1 gets twice the batch so it is the straggler the import must find. Each rank
writes `ddp_rank<r>.pt.trace.json.gz` with the profiler's own distributedInfo."""
import argparse
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP


def worker(rank: int, world: int, out: str, device: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    dev = torch.device(device)
    model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024)).to(dev)
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=1e-3)
    batch = 256 * (2 if rank == 1 else 1)  # rank 1 does twice the work: the straggler
    x = torch.randn(batch, 1024, device=dev)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    sched = torch.profiler.schedule(wait=1, warmup=1, active=3, repeat=1)
    path = os.path.join(out, f"ddp_rank{rank}.pt.trace.json.gz")
    with torch.profiler.profile(activities=acts, schedule=sched, record_shapes=True,
                                on_trace_ready=lambda p: p.export_chrome_trace(path)) as prof:
        for _ in range(5):
            opt.zero_grad()
            ddp(x).square().mean().backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            prof.step()
    dist.destroy_process_group()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    mp.spawn(worker, args=(2, a.out, a.device), nprocs=2)
    print("\n".join(sorted(os.listdir(a.out))), file=sys.stderr)
