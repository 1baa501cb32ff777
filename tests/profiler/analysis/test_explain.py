"""Why a pass helped or hurt: causes named from a real comparison (bert-tiny fp32 vs dynamic int8, batch 8, seq 128,
recorded on this project's CPU) with the runs' own numbers, hand-built runs for added conversions and lost fusion,
and `python -m optimizers results ID`."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from profiler import store
from profiler.analysis import explain
from profiler.analysis.basis import basis, breakdown
from profiler.schema import OpStat
from tests.profiler.analysis.test_recommend import hand_run, small
from tests.testdata import in_process

DATA = Path(__file__).resolve().parents[2] / "data" / "explain_bert_tiny_int8"
COMPARISON = "20261126-024449-apply-bert-tiny-b43a28"


@pytest.fixture
def real(tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(DATA, root)
    saved = store.load_comparison(COMPARISON, root)
    return saved, store.load(saved.base_run_id, root), store.load(saved.optimized_run_id, root), root


def _op(run, name):
    return next(o for o in run.ops if o.name == name)


def test_real_int8_comparison_names_the_kernel_change_with_the_runs_numbers(real):
    saved, base, new, root = real
    verdict, causes = explain.for_saved(saved, root)
    addmm, linear, qlinear = _op(base, "aten::addmm"), _op(base, "aten::linear"), _op(new, "quantized::linear_dynamic")
    sb, sn = basis(base).op_scale, basis(new).op_scale  # each run's operator times on its own median's basis
    kernels = next(c for c in causes if c.kind == "kernels")
    assert kernels.text.startswith(f"Linear/matmul kernels changed: aten::addmm x{addmm.calls:.0f} "
                                   f"({(addmm.exec_ms + addmm.trans_ms) * sb:.3g} ms)")
    after = (qlinear.exec_ms + qlinear.trans_ms) * sn
    assert f"-> quantized::linear_dynamic x{qlinear.calls:.0f} ({after:.3g} ms)" in kernels.text
    before = sum(o.exec_ms + o.trans_ms for o in (addmm, linear)) * sb
    assert kernels.delta_ms == pytest.approx(after - before)
    assert f"{before / after:.2f}x faster" in kernels.text
    assert [abs(c.delta_ms) for c in causes] == sorted((abs(c.delta_ms) for c in causes), reverse=True)
    assert verdict.startswith(f"helped: {base.latency.median_ms:.3g} ms -> {new.latency.median_ms:.3g} ms")
    assert f"mostly {causes[0].text.split(':')[0]}" in verdict  # the largest effect pulling the same way
    assert "caution: the base run's profiled iterations took 2.2x its median" in verdict  # it was a busy machine
    slower_or_faster = [c for c in causes if c.kind in ("faster", "slower")]
    assert slower_or_faster and all(c.ops[0] in c.text for c in slower_or_faster)
    norm_base, norm_new = _op(base, "aten::native_layer_norm"), _op(new, "aten::native_layer_norm")
    norm = next(c for c in causes if c.ops == ["aten::native_layer_norm"])
    assert norm.delta_ms == pytest.approx((norm_new.exec_ms + norm_new.trans_ms) * sn
                                          - (norm_base.exec_ms + norm_base.trans_ms) * sb)


def test_causes_add_up_to_the_change_in_the_median(real, monkeypatch):
    _, base, new, _ = real
    monkeypatch.setattr(explain, "MIN_SHARE", 0.0)
    monkeypatch.setattr(explain, "MIN_MS", 0.0)
    monkeypatch.setattr(explain, "TOP_OPS", 10_000)
    # every op that moved at all is named: nothing left out
    monkeypatch.setattr("profiler.analysis.diff.SAME_BAND", 0.0)

    def on_basis(run):  # operators scaled to the median, plus what they leave of it: the median (coverage <= 1)
        return sum(o.exec_ms + o.trans_ms for o in run.ops) * basis(run).op_scale + breakdown(run)["unexplained"]

    causes = explain.explain(base, new)
    assert sum(c.delta_ms for c in causes) == pytest.approx(on_basis(new) - on_basis(base))
    named = [op for c in causes for op in c.ops]
    assert len(named) == len(set(named))  # every op in one cause only


def test_added_conversions_and_lost_fusion_are_named():
    base = hand_run([OpStat("Torch-Compiled Region: 0/0", calls=1, exec_ms=2.0, trans_ms=0.0),
                     OpStat("aten::addmm", calls=12, exec_ms=10.0, trans_ms=0.0, flops=1e9)], wall_ms=12.5)
    new = hand_run([OpStat("onednn::qlinear_pointwise", calls=12, exec_ms=6.0, trans_ms=0.0, flops=1e9),
                    small("aten::quantize_per_tensor", 3.0, calls=48), small("aten::dequantize", 2.5, calls=48),
                    small("aten::gelu", 1.5, calls=12), small("aten::add", 1.0, calls=24)], wall_ms=14.5)
    causes = {c.kind: c for c in explain.explain(base, new)}
    conv = causes["conversions"]
    assert conv.delta_ms == pytest.approx(5.5)
    assert conv.text.startswith("conversions and copies added: 0 -> 96 calls per inference, 0 ms -> 5.5 ms")
    assert "aten::quantize_per_tensor x0 -> x48 (+3 ms)" in conv.text
    fusion = causes["fusion"]
    assert fusion.text.startswith("lost fusion: Torch-Compiled Region: 0/0 no longer run")
    assert fusion.delta_ms == pytest.approx(1.5 + 1.0 - 2.0) and "op calls per inference 13 -> 144" in fusion.text
    assert causes["kernels"].delta_ms == pytest.approx(-4.0)
    assert "aten::addmm x12 (10 ms) -> onednn::qlinear_pointwise x12 (6 ms)" in causes["kernels"].text
    assert explain.verdict(base, new, list(causes.values())).startswith("hurt: 12.5 ms -> 14.5 ms median")


def test_cli_results_id_prints_the_causes(real):
    from optimizers.cli import main

    _, base, _, root = real
    out = in_process(main, "results", COMPARISON, "--runs-dir", str(root))
    assert out.returncode == 0, out.stderr
    assert f"runs      {base.id} -> " in out.stdout and "why       helped:" in out.stdout
    assert "Linear/matmul kernels changed: aten::addmm x14" in out.stdout
    js = in_process(main, "results", COMPARISON, "--runs-dir", str(root), "--json")
    data = json.loads(js.stdout)
    assert data["id"] == COMPARISON and "kernels" in {c["kind"] for c in data["causes"]}
    assert data["verdict"].startswith("helped")
    bad = in_process(main, "results", "no-such-id", "--runs-dir", str(root))
    assert bad.returncode == 2 and bad.stderr.startswith("error: no saved comparison 'no-such-id'")


def test_a_comparison_whose_run_is_gone_still_shows_and_says_why_not_explained(real):
    saved, base, _, root = real
    store.delete(base.id, root)
    out = subprocess.run([sys.executable, "-m", "optimizers", "results", COMPARISON, "--runs-dir", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"why       not explained: no saved run '{base.id}'" in out.stdout and "dynamic-int8" in out.stdout
