#!/usr/bin/env bash
# The GPU checks, as one short script for a lent GPU machine (its image has torch, transformers, pandas, pytest; no
# streamlit, plotly or torchao, so the dashboard and optimizer tests stay on the CPU machines).
# Usage: OUT=/some/dir bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 OPLENS_RUNS_DIR="$OUT/runs" OPLENS_CACHE_DIR="$OUT/cache" HF_HUB_OFFLINE=1
py=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$py -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
echo "== CUDA tests"
timeout 240 $py -m pytest -q -p no:cacheprovider tests/profiler/measure/test_gpu.py tests/profiler/traces/test_live_gpu_trace.py 2>&1 | tail -15
echo "== profile bert-base on the GPU"
timeout 120 $py -m profiler profile bert-base --batch-size 8 --seq-len 128 --device cuda --top 12 2>&1 | tee "$OUT/profile.txt"
echo "== import the run's own trace (the live CUDA trace through the trace importer)"
trace=$(ls "$OUT"/runs/*/*.pt.trace.json.gz | head -1)
timeout 60 $py -m profiler import "$trace" --top 8 2>&1 | tail -25
echo "== live transfers and kernels (from the run's own trace)"
$py - <<'PY'
import glob, json
run = json.load(open(sorted(glob.glob("$OUT/runs/*bert-base*/run.json".replace("$OUT", __import__("os").environ["OUT"])))[0]))
print("transfers", [(t["direction"], t["calls"], t["bytes"]) for t in run["transfers"]])
print("kernels", len(run.get("kernels") or []), "gpu busy/idle ms", (run.get("gpu") or {}).get("busy_ms"), (run.get("gpu") or {}).get("idle_ms"))
PY
echo "== peaks"
timeout 90 $py -m profiler peaks --device cuda 2>&1
echo "== generate llama on the GPU"
timeout 120 $py -m profiler generate llama --prompt-len 128 --new-tokens 32 --device cuda --repeats 3 2>&1 | tail -20
timeout 60 $py -m profiler generate llama --prompt-len 128 --new-tokens 32 --device cuda --dtype bfloat16 --cache static --repeats 3 2>&1 | tail -8
echo "== a real two-rank DDP job on the GPU (gloo: both ranks share the one GPU), imported as ranks"
timeout 120 $py tests/data/make_ddp_traces.py "$OUT/ddp" --device cuda 2>&1 | tail -3
timeout 60 $py -m profiler import "$OUT"/ddp/ddp_rank0.pt.trace.json.gz "$OUT"/ddp/ddp_rank1.pt.trace.json.gz \
  --runs-dir "$OUT/ddp-runs" 2>&1 | grep -E "^(rank|note|device|breakdown)"
echo "== one path: a live CUDA run's figures against the import of its own trace"
PYTHONPATH=$PWD timeout 150 $py benchmarks/gpu_one_path.py 2>&1 | tail -20
