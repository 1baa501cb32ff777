"""Serving engines' steps (SGLang, vLLM annotations) split into prefill and decode phases with their kernels.
"""
from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from profiler.schema import KernelStat, ServingPhase
from profiler.traces.attribution import Attribution, attribute
from profiler.traces.columns import TraceData

SGLANG_STEP = re.compile(r"step\[(EXTEND|PREFILL|MIXED|DECODE)\b([^\]]*)\]")
VLLM_STEP = re.compile(r"execute_(\d+)_context_(\d+)(?:\([^)]*\))?_generation_(\d+)")
SGLANG_PHASE = {"EXTEND": "prefill", "PREFILL": "prefill", "MIXED": "prefill", "DECODE": "decode"}


def _sglang_mark(name: str) -> tuple[str, int | None, int | None] | None:
    m = SGLANG_STEP.match(name)
    if not m:
        return None
    fields = dict(re.findall(r"(\w+)=(\d+)", m.group(2)))
    bs = int(fields["bs"]) if "bs" in fields else None
    toks = int(fields["toks"]) if "toks" in fields else (bs if m.group(1) == "DECODE" else None)
    return SGLANG_PHASE[m.group(1)], bs, toks


def _vllm_mark(name: str) -> tuple[str, int | None, int | None] | None:
    """vLLM's execute_<tokens>_context_<prefill reqs>(...)_generation_<decode reqs>(...): a step with any prefill
    request is a prefill (chunked-prefill steps mix both); its batch is all requests."""
    m = VLLM_STEP.match(name)
    if not m:
        return None
    tokens, context, generation = (int(g) for g in m.groups())
    return ("prefill" if context else "decode"), context + generation, tokens


PHASE_PARSERS = {"sglang": _sglang_mark, "vllm": _vllm_mark}


def serving_phases(d: TraceData, a: Attribution | None = None, top: int = 5) -> list[ServingPhase]:
    """Prefill and decode steps from a serving engine's annotations, with batch size, tokens, kernel time and top
    kernels per phase. One engine's annotations are used (SGLang's first): both name the same steps. A kernel belongs
    to the last step annotation begun before it was launched (its own start when the launch is not in the trace)."""
    marks = d.phase_marks
    if not marks or not len(marks.get("ts", [])):
        return []
    for source, parse in PHASE_PARSERS.items():
        steps = sorted((float(ts), parsed) for n, ts in zip(marks["name"].tolist(), marks["ts"].tolist())
                       if (parsed := parse(d.names[n])) is not None)
        if steps:
            break
    else:
        return []
    a = a or attribute(d)
    dev = d.device
    kernel = dev["kind"] == 0
    when = np.where(np.isnan(a.dev_launch_ts), dev["ts"], a.dev_launch_ts)[kernel]
    starts = np.array([s[0] for s in steps])
    owner = np.searchsorted(starts, when, side="right") - 1  # -1: before the first step
    names, durs = dev["name"][kernel], dev["dur"][kernel]
    out = []
    for phase in ("prefill", "decode"):
        idx = [i for i, s in enumerate(steps) if s[1][0] == phase]
        if not idx:
            continue
        mine = np.isin(owner, idx)
        per: dict[int, list[float]] = defaultdict(lambda: [0, 0.0])
        for n, du in zip(names[mine].tolist(), durs[mine].tolist()):
            per[n][0] += 1
            per[n][1] += du
        top_k = sorted(per.items(), key=lambda kv: -kv[1][1])[:top]
        bs = [steps[i][1][1] for i in idx if steps[i][1][1] is not None]
        toks = [steps[i][1][2] for i in idx if steps[i][1][2] is not None]
        out.append(ServingPhase(
            name=phase, steps=len(idx), batch_size=max(bs) if bs else None, tokens=sum(toks) if toks else None,
            kernel_ms=float(durs[mine].sum()) / 1e3, source=source,
            top_kernels=[KernelStat(name=d.names[n], calls=float(c), time_ms=t / 1e3, op="") for n, (c, t) in top_k]))
    return out
