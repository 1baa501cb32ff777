"""Rules for GPU runs and imported GPU traces: what a kernel timeline and the work of each recorded call say that a
CPU run cannot. Each is a Context -> Recommendation | None, as in analysis/recommend.py (which lists them in RULES);
each reads the run's per-signature work (run.shapes), its GPU timeline (run.gpu) and the GPU's ceilings.

- fp32 matmuls on a GPU whose tensor cores are much faster in TF32/bf16;
- small GEMMs far below the roof (each call too small to fill the GPU: fixed cost per kernel dominates);
- the GPU waiting for the host (launch-bound stretches, kernels shorter than their launch);
- copies and fills inside the step;
- communication that computation does not hide (exposed communication).
"""
from __future__ import annotations

from profiler.analysis import roofline as rl
from profiler.schema import Recommendation, ShapeStat

# every rule takes recommend.Context (not imported: recommend.py imports this module)

FAST_TENSOR_CORES = 2.0  # TF32/bf16 tensor cores at least this much faster than fp32: fp32 GEMMs leave most behind
FP32_SHARE = 0.10  # fp32 matmul-class kernel time from this share of the compute time on
SMALL_GEMM_ROOF = 0.10  # a GEMM signature under 10% of its roof ...
SMALL_GEMM_SHARE = 0.10  # ... in signatures holding this share of the compute time together
HOST_WAIT_SHARE = 0.30  # the GPU idle, waiting for the host, for this share of the step
COPY_SHARE = 0.05  # memcpy + memset for this share of the step
EXPOSED_COMM_SHARE = 0.10  # communication not hidden by computation for this share of the GPU's busy time
MATMUL = ("gemm", "conv", "attention")


def _compute_ms(ctx) -> float:
    return sum(o.exec_ms for o in ctx.run.ops if o.category == "compute") or 1.0


def _roof_ms(s: ShapeStat, peak_gflops: float, bw_gbs: float) -> float:
    """The median call's time at its roof (ms)."""
    compute = s.flops / (peak_gflops * 1e9) if peak_gflops > 0 else 0.0
    memory = s.bytes / (bw_gbs * 1e9) if bw_gbs > 0 else 0.0
    return max(compute, memory) * 1e3


def _example(s: ShapeStat) -> str:
    return f"{s.op} {s.params}" if s.params else f"{s.op} {s.shape}"


def rule_fp32_tensor_cores(ctx) -> Recommendation | None:
    """fp32 GEMMs, convolutions or attention on a GPU with fast TF32/bf16 tensor cores -> TF32 or bf16/fp16."""
    p = ctx.peaks
    if ctx.run.device.kind != "cuda" or not p.fp32_gflops:
        return None
    fast = max(p.tf32_gflops, p.bf16_gflops, p.fp16_gflops)
    rows = [s for s in ctx.run.shapes if s.known and s.family in MATMUL and s.dtype == "fp32"]
    ms = sum(s.time_ms for s in rows)
    share = ms / _compute_ms(ctx)
    if fast < FAST_TENSOR_CORES * p.fp32_gflops or share < FP32_SHARE:
        return None
    before = after = 0.0
    for s in rows:  # each signature: its time / the speedup, never under its bytes at full bandwidth
        before += s.time_ms
        after += max(s.time_ms * p.fp32_gflops / fast, s.calls * s.bytes / (p.mem_bw_gbs * 1e6) if p.mem_bw_gbs else 0)
    gain = _compute_ms(ctx) / (_compute_ms(ctx) - before + after)
    low = "bf16" if p.bf16_gflops else "fp16"  # V100 and T4 have fp16 tensor cores only
    how = (f"TF32 (torch.backends.cuda.matmul.allow_tf32 = True) or autocast to {low}" if p.tf32_gflops
           else f"autocast to {low}")
    return Recommendation(
        rule="fp32-tensor-cores", title=f"Run the fp32 matmuls on tensor cores: {how}",
        passes=["autocast"], raw_estimate=gain,
        evidence=f"fp32 matmul-class kernels hold {share:.0%} of the kernel time ({ms:.3g} ms, {len(rows)} "
                 f"signature(s), e.g. {_example(max(rows, key=lambda s: s.time_ms))}); this GPU's tensor cores reach "
                 f"{fast / 1e3:,.0f} TFLOP/s against {p.fp32_gflops / 1e3:,.1f} fp32 ({fast / p.fp32_gflops:.0f}x, "
                 f"{'spec' if p.source == 'spec' else p.source})")


def rule_small_gemms(ctx) -> Recommendation | None:
    """GEMM signatures far below their roof holding a real share of the time -> fewer, larger GEMMs."""
    p = ctx.peaks
    if ctx.run.device.kind != "cuda":
        return None
    slow = []
    for s in ctx.run.shapes:
        if s.family != "gemm" or not s.known or s.median_us <= 0:
            continue
        roof = _roof_ms(s, rl.peak_gflops(p, s.dtype), p.mem_bw_gbs)
        if roof / (s.median_us / 1e3) < SMALL_GEMM_ROOF:
            slow.append((s, roof / (s.median_us / 1e3)))
    ms = sum(s.time_ms for s, _ in slow)
    share = ms / _compute_ms(ctx)
    if share < SMALL_GEMM_SHARE:
        return None
    worst, frac = max(slow, key=lambda x: x[0].time_ms)
    return Recommendation(
        rule="small-gemms", title="Small GEMMs run far below the roof: batch or fuse them", passes=["torch-compile"],
        raw_estimate=rl.amdahl(share, 2.0),
        evidence=f"{len(slow)} GEMM signature(s) below {SMALL_GEMM_ROOF:.0%} of their roof hold {share:.0%} of the "
                 f"kernel time ({ms:.3g} ms); the largest, {_example(worst)}, takes {worst.median_us:.3g} us per call "
                 f"at {worst.tflops:.3g} TFLOP/s ({frac:.1%} of its roof): too little work per kernel to fill the "
                 "GPU. A larger batch, fused projections (one GEMM for q, k, v) or torch.compile raise the work "
                 "per kernel")


def rule_host_wait(ctx) -> Recommendation | None:
    """The GPU idle while the host had not launched the next kernel -> CUDA graphs (one launch per step)."""
    g = ctx.run.gpu
    if g is None or g.window_ms <= 0:
        return None
    share = g.idle_host_ms / g.window_ms
    if share < HOST_WAIT_SHARE:
        return None
    return Recommendation(
        rule="host-wait", title="The GPU waits for the host: capture the step as a CUDA graph", passes=["cuda-graphs"],
        raw_estimate=1 / max(1e-9, 1 - share * 0.8),  # most of the wait goes; the kernels' own time stays
        evidence=f"per step the GPU is idle {g.idle_ms:.3g} of {g.window_ms:.3g} ms, {g.idle_host_ms:.3g} ms "
                 f"({share:.0%}) waiting for the host to launch the next kernel; {g.short_kernels:.0f} kernels "
                 f"per step run under 10 us, {g.kernels_shorter_than_launch:.0f} shorter than their own launch "
                 f"call; launch overhead {g.launch_overhead_ms * 1e3:.3g} us median")


def rule_copies_in_step(ctx) -> Recommendation | None:
    """memcpy and memset inside the step -> pinned, asynchronous copies off the critical path; fewer fills."""
    g = ctx.run.gpu
    if g is None or g.window_ms <= 0:
        return None
    ms = g.memcpy_ms + g.memset_ms
    share = ms / g.window_ms
    if share < COPY_SHARE:
        return None
    directions = ", ".join(f"{t.direction} {t.time_ms:.3g} ms" for t in ctx.run.transfers[:3])
    return Recommendation(
        rule="copies-in-step", title="Copies and fills inside the step: pin, prefetch, keep data on the GPU",
        passes=["pinned-memory", "resident-inputs"], raw_estimate=1 / max(1e-9, 1 - g.exposed_memcpy_ms / g.window_ms),
        evidence=f"memcpy {g.memcpy_ms:.3g} ms and memset {g.memset_ms:.3g} ms per step ({share:.0%} of the "
                 f"{g.window_ms:.3g} ms window), {g.exposed_memcpy_ms:.3g} ms of it exposed (no kernel running "
                 f"beside it); over the trace: {directions or 'no copies by direction'}")


def rule_exposed_comm(ctx) -> Recommendation | None:
    """Communication computation does not hide -> overlap it (bucketed all-reduce, async collectives)."""
    g = ctx.run.gpu
    if g is None or g.busy_ms <= 0 or g.comm_ms <= 0:
        return None
    share = g.exposed_comm_ms / g.busy_ms  # of the GPU's busy time: a host-bound step's idle time would hide it
    if share < EXPOSED_COMM_SHARE:
        return None
    return Recommendation(
        rule="exposed-comm", title="Communication is not overlapped with computation", passes=[],
        raw_estimate=1 / max(1e-9, 1 - share * 0.5),  # half the exposed time hidden: a conservative overlap
        evidence=f"per step {g.comm_ms:.3g} ms of communication kernels, {g.exposed_comm_ms:.3g} ms of it exposed "
                 f"(no computation beside it: {share:.0%} of the GPU's {g.busy_ms:.3g} ms busy time). Overlap it: DDP "
                 "bucket_cap_mb, FSDP prefetch, async collectives launched before the compute that does not need "
                 "their result")


GPU_RULES = (rule_fp32_tensor_cores, rule_small_gemms, rule_host_wait, rule_copies_in_step, rule_exposed_comm)
