"""Generation passes on a Llama-style decoder, each timed side by side (ABBA) with eager fp32 generate, one run.

    python benchmarks/generation.py [--model smollm2] [--prompt-len 128] [--new-tokens 64] [--rounds 3]
                                    [--passes bf16 weight-only-int8 ...] [--search tpot|ttft]

The default model is SmolLM2-135M-Instruct (Llama architecture, GQA, real weights): greedy agreement means something
only where the next-token choices are not near-ties, which on random weights (`--model llama`) they mostly are.

Prints TTFT, TPOT, decode tokens/s and their speedups (ratio of medians, 10-90% range of the paired rounds), greedy
token agreement, prefill-logit cosine and apply time (compile included) per pipeline.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from optimizers.generation import optimize_generation, search_generation  # noqa: E402
from optimizers.tables import generation_text  # noqa: E402
from profiler.models.loading import load_model  # noqa: E402
from profiler.schema import GenerateConfig  # noqa: E402

PIPELINES = [["bf16"], ["autocast"], ["dynamic-int8"], ["weight-only-int8"], ["int8-weight-bf16"],
             ["static-cache-compile"], ["bf16", "static-cache-compile"], ["int8-weight-bf16", "static-cache-compile"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--passes", nargs="*", help="one pipeline, comma-separated passes (default: each of a fixed list)")
    ap.add_argument("--search", choices=("tpot", "ttft"))
    a = ap.parse_args()
    loaded = load_model(a.model)
    config = GenerateConfig(batch_size=1, prompt_len=a.prompt_len, new_tokens=a.new_tokens)
    t0 = time.time()
    if a.search:
        results = search_generation(loaded, config, a.search, rounds=a.rounds)
    else:
        pipelines = [p.split(",") for p in a.passes] if a.passes else PIPELINES
        results = []
        for p in pipelines:
            results.append(optimize_generation(loaded, p, config, a.rounds))
            print(generation_text(results[-1:]), flush=True)
    print(
        f"\n{a.model}, batch 1, prompt {a.prompt_len}, {a.new_tokens} new tokens; cpu, "
        f"{torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; {time.time() - t0:.0f} s"
    )
    print(generation_text(results))


if __name__ == "__main__":
    main()
