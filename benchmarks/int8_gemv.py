"""One decode step's Linears at batch 1 (GEMV), timed in one run: float32 F.linear, bf16 F.linear, and the int8-weight
kernel (aten._weight_int8pack_mm) fed float32 or bf16 inputs. Shapes are SmolLM2-135M's (hidden 576, MLP 1536, vocab
49152); the ratio column is float32 time / each.

    python benchmarks/int8_gemv.py [--repeats 300]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from profiler.console import format_table  # noqa: E402
from profiler.devices import cpu_name  # noqa: E402

SHAPES = [(576, 1536, "gate/up_proj"), (1536, 576, "down_proj"), (576, 576, "q/o_proj"), (576, 49152, "lm_head")]


def median_us(fn, repeats: int) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=300)
    a = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for k, n, what in SHAPES:
        w, x = torch.randn(n, k) * 0.02, torch.randn(1, k)
        scale = (w.abs().amax(1) / 127).to(torch.bfloat16)
        wq = torch.round(w / scale.float()[:, None]).clamp(-128, 127).to(torch.int8)
        wb, xb = w.bfloat16(), x.bfloat16()
        with torch.inference_mode():
            fp32 = median_us(lambda: torch.nn.functional.linear(x, w), a.repeats)
            bf16 = median_us(lambda: torch.nn.functional.linear(xb, wb), a.repeats)
            i8_f = median_us(lambda: torch.ops.aten._weight_int8pack_mm(x, wq, scale.float()), a.repeats)
            i8_b = median_us(lambda: torch.ops.aten._weight_int8pack_mm(xb, wq, scale), a.repeats)
        rows.append([what, f"[1,{k}]x[{n},{k}]", f"{fp32:.1f}", f"{bf16:.1f}", f"{i8_f:.1f}", f"{i8_b:.1f}",
                     f"{fp32 / bf16:.2f}", f"{fp32 / i8_f:.2f}", f"{fp32 / i8_b:.2f}"])
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; median of {a.repeats} calls")
    print(format_table(rows, ["linear", "shape", "fp32 us", "bf16 us", "int8w fp32-in us", "int8w bf16-in us",
                              "x bf16", "x int8w fp32-in", "x int8w bf16-in"], left=(0, 1)))


if __name__ == "__main__":
    main()
