"""profiler.generate: greedy generation timed step by step, the KV cache against its formula, phases, the CLI."""
import json
import os
import subprocess
import sys

import pytest
import torch

import profiler
from profiler import store
from profiler.measure import peaks
from profiler.measure.generate import generate as run_generate
from profiler.models.decoder import greedy, kv_formula_bytes, new_cache, step_weight_bytes
from profiler.schema import GenerateConfig, ModelRunError, Peaks, ProfileRun

PEAKS = Peaks(device="cpu", name="test", source="measured", fp32_gflops=100.0, bf16_gflops=50.0, mem_bw_gbs=10.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: decode steps on one thread


def quick(**kw) -> GenerateConfig:
    return GenerateConfig(
        **dict(dict(batch_size=2, prompt_len=8, new_tokens=5, warmup=1, repeats=3, min_time_s=0.0), **kw)
    )


@pytest.mark.parametrize("name", ["llama-tiny", "gpt2-tiny", "qwen2-tiny"])
@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_manual_greedy_loop_equals_model_generate(name, cache):
    loaded = profiler.load_model(name, batch_size=2, seq_len=8)
    model, ids = loaded.module, loaded.kwargs["input_ids"]
    with torch.inference_mode():
        mine = greedy(model, ids, 6, new_cache(model, cache, 14), lambda phase: torch.inference_mode(), True)
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, min_new_tokens=6,
                             do_sample=False, use_cache=True, pad_token_id=0,
                             **({"cache_implementation": "static"} if cache == "static" else {}))
    assert torch.equal(mine, ref[:, 8:])


@pytest.fixture(scope="module")
def llama_run():
    torch.set_num_threads(1)
    return profiler.generate(profiler.load_model("llama-tiny", batch_size=2, seq_len=8), quick(), peaks=PEAKS)


def test_latencies_are_positive_and_consistently_defined(llama_run):
    g, c = llama_run.generation, quick()
    assert g.ttft_ms > 0 and g.tpot_ms.median > 0 and g.tpot_ms.p90 >= g.tpot_ms.median and g.e2e_ms > 0
    assert len(g.steps_ms) == len(g.e2e.samples_ms) == len(g.ttft.samples_ms) >= 3
    assert all(len(s) == c.new_tokens - 1 for s in g.steps_ms)
    for e2e, ttft, steps in zip(g.e2e.samples_ms, g.ttft.samples_ms, g.steps_ms):
        assert e2e >= ttft + sum(steps)  # e2e wraps the steps (and the loop between them)
    assert g.tpot_ms.n == sum(len(s) for s in g.steps_ms)
    # tokens/s counts every generated token over the whole generation; decode tokens/s is one step's batch
    assert g.tokens_per_s == pytest.approx(1e3 * c.batch_size * c.new_tokens / g.e2e_ms)
    assert g.decode_tokens_per_s == pytest.approx(1e3 * c.batch_size / g.tpot_ms.median)
    assert g.prefill_tokens_per_s == pytest.approx(1e3 * c.batch_size * c.prompt_len / g.ttft_ms)
    assert llama_run.latency.median_ms == g.e2e_ms
    assert len(g.itl_ms) == len(g.context_lens) == c.new_tokens - 1 and g.context_lens[0] == c.prompt_len + 1
    assert len(g.token_ids) == 2 and all(len(t) == c.new_tokens for t in g.token_ids) and g.deterministic
    assert g.memory is not None and g.memory.peak_bytes > 0


def test_phases_have_ops_flops_bytes_and_roofs(llama_run):
    g = llama_run.generation
    assert [p.name for p in g.phases] == ["prefill", "decode"]
    prefill, decode = g.phases
    for p in g.phases:
        assert p.ops and p.exec_ms > 0 and p.flops > 0 and p.bytes > 0 and p.floor_ms > 0 and 0 < p.roof_fraction
        assert "aten::mm" in {o.name for o in p.ops}
    assert (prefill.roof, prefill.steps, decode.roof, decode.steps) == ("compute", 1, "memory", 4)
    # decode floor: weights + KV cache read per step over the bandwidth
    assert g.decode_floor_ms == pytest.approx(g.decode_bytes_per_token / (PEAKS.mem_bw_gbs * 1e9) * 1e3)
    assert g.decode_bytes_per_token > g.weight_bytes_per_step
    assert g.prefill_floor_ms == prefill.floor_ms >= prefill.flops / (PEAKS.fp32_gflops * 1e9) * 1e3
    assert llama_run.ops and llama_run.totals.exec_ms > 0 and llama_run.trace_path


def test_phase_operators_come_from_the_generations_own_trace(llama_run):
    # one path (issue 10): the run's and each phase's operators are the import's analysis of the run's own trace
    from profiler.traces.importer import import_trace

    imported = {o.name: o for o in import_trace(llama_run.trace_path).ops}
    assert {o.name: (o.calls, o.exec_ms) for o in llama_run.ops} == {
        n: (o.calls, o.exec_ms) for n, o in imported.items()}
    prefill, decode = llama_run.generation.phases
    mm = {p.name: next(o for o in p.ops if o.name == "aten::mm") for p in (prefill, decode)}
    # each step runs the same layers: 4 decode steps call mm 4x as often as the prefill; the whole run holds both
    assert mm["decode"].calls == 4 * mm["prefill"].calls
    assert imported["aten::mm"].calls == mm["prefill"].calls + mm["decode"].calls
    assert mm["prefill"].flops > 0 and mm["prefill"].input_shapes  # from the untimed pass, per phase


def test_run_round_trips_through_the_store(llama_run, tmp_path):
    d = llama_run.to_dict()
    assert ProfileRun.from_dict(json.loads(json.dumps(d))).to_dict() == d
    store.save(llama_run, tmp_path)
    back = store.load(llama_run.id, tmp_path)
    assert back.generation.tpot_ms.median == llama_run.generation.tpot_ms.median
    assert back.generation.phases[1].ops[0].name == llama_run.generation.phases[1].ops[0].name


@pytest.mark.parametrize("cache,tokens", [("dynamic", 8 + 5 - 1), ("static", 8 + 5)])
@pytest.mark.parametrize("dtype,element", [("float32", 4), ("bfloat16", 2)])
def test_kv_cache_bytes_equal_the_formula_with_gqa(cache, tokens, dtype, element):
    loaded = profiler.load_model("llama-tiny", batch_size=2, seq_len=8)
    g = run_generate(loaded, quick(cache=cache, dtype=dtype, warmup=0, repeats=1), peaks=PEAKS).generation
    lay = g.kv_layout
    assert lay["kv_heads"] < lay["heads"]  # grouped-query attention: the cache holds kv_heads, not heads
    assert (lay["layers"], lay["kv_heads"], lay["head_dim"], lay["element_bytes"]) == (2, 2, 16, element)
    expected = 2 * 2 * 2 * 16 * tokens * 2 * element  # 2 x layers x kv_heads x head_dim x tokens x batch x bytes
    assert g.kv_cache_bytes == g.kv_cache_formula_bytes == expected == kv_formula_bytes(lay, tokens, 2)
    assert g.kv_cache_tokens == tokens and g.kv_bytes_per_token == 2 * 2 * 2 * 16 * element


def test_step_weights_skip_untied_input_embeddings_only():
    llama = profiler.load_model("llama-tiny").module  # untied: embed_tokens read by row, lm_head read whole
    emb = llama.model.embed_tokens.weight
    total = sum(p.numel() * 4 for p in llama.parameters())
    assert step_weight_bytes(llama) == total - emb.numel() * 4
    qwen = profiler.load_model("qwen2-tiny").module  # tied: the one table is read whole by the output projection
    assert qwen.lm_head.weight is qwen.model.embed_tokens.weight
    assert step_weight_bytes(qwen) == sum(p.numel() * 4 for p in qwen.parameters())


def test_any_causal_lm_directory_generates(tmp_path):
    profiler.load_model("qwen2-tiny").module.save_pretrained(tmp_path / "qwen")
    loaded = profiler.load_model(str(tmp_path / "qwen"), batch_size=1, seq_len=6)
    run = run_generate(loaded, quick(batch_size=1, prompt_len=6, new_tokens=3, warmup=0, repeats=1), peaks=PEAKS)
    assert run.model.source == "hf-dir" and len(run.generation.token_ids[0]) == 3
    assert run.generation.kv_cache_bytes == run.generation.kv_cache_formula_bytes


def test_non_causal_model_and_bad_config_are_refused():
    with pytest.raises(ModelRunError, match="not a causal language model"):
        run_generate(profiler.load_model("bert-tiny"), quick(), peaks=PEAKS)
    with pytest.raises(ModelRunError, match="new-tokens must be at least 1"):
        run_generate(profiler.load_model("llama-tiny"), quick(new_tokens=0), peaks=PEAKS)
    with pytest.raises(ModelRunError, match="at most 512 positions"):
        run_generate(profiler.load_model("llama-tiny"), quick(prompt_len=500, new_tokens=13), peaks=PEAKS)
    with pytest.raises(ModelRunError, match="unknown cache"):
        run_generate(profiler.load_model("llama-tiny"), quick(cache="paged"), peaks=PEAKS)


# ---------------------------------------------------------------- the CLI, as a user runs it

@pytest.fixture
def cli_env(tmp_path):
    """One thread, and a peaks cache seeded for it, so the CLI does not spend 10 s measuring the machine."""
    cache = tmp_path / "cache"
    cache.mkdir()
    key = peaks.cache_key(torch.device("cpu"), threads=1)
    (cache / "peaks.json").write_text(json.dumps({key: PEAKS.to_dict()}))
    return dict(os.environ, OMP_NUM_THREADS="1", OPLENS_CACHE_DIR=str(cache))


def cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_cli_generate_json_has_the_contract_keys(cli_env, tmp_path):
    r = cli(cli_env, "generate", "gpt2-tiny", "--prompt-len", "8", "--new-tokens", "4", "--repeats", "2", "--min-time",
            "0", "--json", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    for key in ["id", "model", "device", "config", "latency", "totals", "ops", "transfers", "graph", "trace_path"]:
        assert key in run
    g = run["generation"]
    assert {"ttft_ms", "tpot_ms", "tokens_per_s", "e2e_ms", "kv_cache_bytes", "decode_floor_ms", "phases"} <= set(g)
    assert {"median", "p90"} <= set(g["tpot_ms"]) and g["peaks_source"].startswith("measured (test)")
    assert [p["name"] for p in g["phases"]] == ["prefill", "decode"] and all(p["ops"] for p in g["phases"])
    assert run["config"]["seq_len"] == 8 and len(g["token_ids"][0]) == 4
    shown = cli(cli_env, "show", run["id"], "--runs-dir", str(tmp_path / "runs"))
    assert shown.returncode == 0 and "TPOT       median" in shown.stdout


@pytest.mark.slow  # the text table; the JSON contract test and cli_contract run the same command (~10 s)
def test_cli_generate_table(cli_env, tmp_path):
    r = cli(cli_env, "generate", "qwen2-tiny", "--prompt-len", "8", "--new-tokens", "6", "--cache", "static",
            "--repeats", "2", "--min-time", "0", "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    for text in [
        "TTFT",
        "TPOT       median",
        "tokens/s",
        "KV cache",
        "matches 2 x 2 layers x 2 kv heads",
        "decode     floor",
        "prefill    floor",
        "Top operators in decode",
        "static cache",
        "context tokens",
    ]:
        assert text in r.stdout, text


@pytest.mark.parametrize("args,message", [
    (["gpt2-tiny", "--prompt-len", "0"], "--prompt-len"),
    (["gpt2-tiny", "--new-tokens", "0"], "--new-tokens"),
    pytest.param(["bert-tiny"], "not a causal language model", marks=pytest.mark.slow),  # in-process: above
    (["gpt2-tiny", "--cache", "paged"], "--cache"),
])
def test_cli_generate_bad_input_is_one_error_line(cli_env, tmp_path, args, message):
    r = cli(cli_env, "generate", *args, "--runs-dir", str(tmp_path / "runs"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr
