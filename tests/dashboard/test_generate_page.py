"""The Generate page renders a saved generation run: TTFT, TPOT, tokens/s, per-token latency, KV growth, phases."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory):
    import os

    import torch

    import profiler
    from profiler.measure.generate import generate
    from profiler.schema import GenerateConfig, Peaks

    root = tmp_path_factory.mktemp("gen-runs")
    os.environ.setdefault("OPLENS_LOCK_FILE", str(root / "lock"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = generate(profiler.load_model("llama-tiny"),
                       GenerateConfig(batch_size=1, prompt_len=8, new_tokens=5, warmup=1, repeats=3, min_time_s=0.0),
                       peaks=Peaks(device="cpu", name="test", source="measured", fp32_gflops=100.0, bf16_gflops=50.0,
                                   mem_bw_gbs=10.0))
    finally:
        torch.set_num_threads(threads)
    profiler.store.save(run, root)
    return run, root


def open_generate(monkeypatch, root, run_id=None) -> AppTest:
    monkeypatch.setenv("OPLENS_RUNS_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=30)
    if run_id:
        at.session_state["run_id"] = run_id
    at.run()
    at.switch_page("app_pages/generate.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_generate_page_shows_the_saved_generation(gen_run, monkeypatch):
    run, root = gen_run
    at = open_generate(monkeypatch, root, run.id)
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    g = run.generation
    assert metrics["TTFT"] == f"{g.ttft_ms:.3g} ms" and metrics["TPOT"] == f"{g.tpot_ms.median:.3g} ms"
    assert metrics["tokens/s"] == f"{g.tokens_per_s:.4g}"
    assert len(at.get("plotly_chart")) >= 2
    assert list(at.dataframe[0].value["phase"]) == ["prefill", "decode"]
    assert [b.label for b in at.button] == ["Profile the generation", "Optimize"]  # the two forms' submit buttons
    assert at.text_input(key="gen_opt_model").value == "llama-tiny"  # the selected generation's model


def test_the_forms_start_from_what_works_here(tiny_bert_run, monkeypatch, cached_peaks):
    """Issue 21: with a bert-tiny run selected, the Optimize form offered "bert-tiny" (not a causal LM: its default
    action failed after 12 s) and bf16 (emulated on an AVX2-only CPU: slower)."""
    import torch

    from optimizers.generation import default_model, default_passes, generation_pass

    run, root = tiny_bert_run
    at = open_generate(monkeypatch, root, run.id)
    assert any("not a generation" in str(i.value) for i in at.info)
    assert at.text_input(key="gen_opt_model").value == default_model()
    assert at.text_input(key="gen_profile_model").value == default_model()
    chosen = at.multiselect(key="gen_opt_passes").value
    assert chosen == default_passes(torch.device("cpu"))
    assert all(generation_pass(n).emulated(torch.device("cpu")) is None for n in chosen)


@pytest.mark.slow  # a real generation profile (~10 s): the browser test profiles one from this page in the default run
def test_the_page_profiles_a_generation_once(tmp_path, monkeypatch):
    """The page creates a generation run (it was CLI only), one job however often it is asked, and shows it."""
    import time

    from profiler import store

    monkeypatch.setenv("OPLENS_LOCK_FILE", str(tmp_path / "lock"))
    at = open_generate(monkeypatch, tmp_path)
    at.text_input(key="gen_profile_model").set_value("llama-tiny")
    at.number_input(key="gen_profile_prompt").set_value(8)
    at.number_input(key="gen_profile_new").set_value(4)
    at.button[0].click().run()
    at.button[0].click().run()  # asked twice while the first is queued or running: one job
    assert any("already" in str(i.value) for i in at.info), [i.value for i in at.info]
    deadline = time.time() + 240
    while time.time() < deadline and not store.scan_runs(tmp_path).runs:
        time.sleep(1)
    time.sleep(1)
    [saved] = store.scan_runs(tmp_path).runs
    loaded = store.load(saved.id, tmp_path)
    assert loaded.generation is not None and loaded.generation.config.new_tokens == 4
    at.run()
    assert not at.exception
    assert {m.label for m in at.metric} >= {"TTFT", "TPOT"}


def test_generate_page_on_an_empty_store(tmp_path, monkeypatch):
    at = open_generate(monkeypatch, tmp_path)
    assert any("No saved runs yet" in str(i.value) for i in at.info)


def test_generation_views_rows(gen_run):
    from optimizers.generation import generation_views

    g = gen_run[0].generation
    v = generation_views(g)
    assert len(v["per_token"]) == g.config.new_tokens - 1
    assert v["kv"][-1]["kv_cache_bytes"] > v["kv"][0]["kv_cache_bytes"]
    assert {p["phase"] for p in v["phases"]} == {"prefill", "decode"}


def test_generate_page_shows_what_the_model_wrote(gen_run, monkeypatch, tmp_path):
    """A model with a tokenizer (smollm2, an HF directory) has its generation decoded; the page shows that text."""
    import copy

    import profiler

    run = copy.deepcopy(gen_run[0])
    run.generation.text = " and the town grew up around the bridge."
    profiler.store.save(run, tmp_path)
    at = open_generate(monkeypatch, tmp_path, run.id)
    assert any(c.value == run.generation.text for c in at.code)
    assert any("What the model wrote" in c.value for c in at.caption)
