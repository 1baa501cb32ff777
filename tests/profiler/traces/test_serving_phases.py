"""Serving traces split into prefill and decode from the engine's own annotations (SGLang step[...], vLLM
execute_...)."""

import json
import os

from profiler.schema import ProfileRun
from profiler.traces.importer import import_trace
from profiler.traces.serving import _sglang_mark, _vllm_mark

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "data")


def test_sglang_decode_trace_has_one_decode_phase_with_its_kernels():
    run = import_trace(os.path.join(DATA, "sglang_qwen3_8b_decode.pt.trace.json.gz"))
    assert [p.name for p in run.phases] == ["decode"]
    p = run.phases[0]
    assert (p.steps, p.batch_size, p.tokens, p.source) == (1, 32, 32, "sglang")
    total = sum(k.time_ms for k in run.kernels if k.kind == "kernel")
    assert 0.9 * total <= p.kernel_ms <= total + 1e-6
    assert p.top_kernels and p.top_kernels[0].time_ms >= p.top_kernels[-1].time_ms
    assert ProfileRun.from_dict(json.loads(json.dumps(run.to_dict()))).phases == run.phases


def test_annotation_parsers():
    assert _sglang_mark("step[EXTEND bs=4 toks=512]") == ("prefill", 4, 512)
    assert _sglang_mark("step[DECODE bs=32]") == ("decode", 32, 32)
    assert _sglang_mark("ProfilerStep#3") is None
    assert _vllm_mark("execute_32_context_0(sq0sk0)_generation_32(sq32sk3)") == ("decode", 32, 32)
    assert _vllm_mark("execute_300_context_2(sq290)_generation_10(sq10)") == ("prefill", 12, 300)


def test_a_trace_without_engine_annotations_has_no_phases():
    run = import_trace(os.path.join(DATA, "h100_bert_small.pt.trace.json.gz"))
    assert run.phases == []
