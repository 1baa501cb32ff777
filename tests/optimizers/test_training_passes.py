"""Training passes with proof: speed side by side, the loss from the same weights and samples, peak memory; a pass
that changes what the model learns is caught."""
from __future__ import annotations

import subprocess
import sys

import pytest

from optimizers import training as tp
from profiler import store
from profiler.models.loading import load_model
from profiler.schema import ModelRunError, TrainConfig
from testdata import in_process

FAST = {"rounds": 2, "steps": 2, "curve_steps": 4}


def test_fused_optimizer_is_proven_same_loss_and_timed_abba():
    c = tp.compare(load_model("mlp-tiny"), ["fused-optimizer"], TrainConfig(batch_size=8), **FAST)
    assert c.agrees and c.new_heldout == pytest.approx(c.base_heldout, rel=1e-4)
    assert c.speedup.rounds == 2 and c.speedup.p10 <= c.speedup.median <= c.speedup.p90
    assert c.base_peak_bytes > 0 and c.new_peak_bytes > 0 and "adamw -> adamw-fused" in c.notes[0]


def test_gradient_accumulation_is_the_same_update_and_larger_batch_keeps_lr_per_sample():
    acc = tp.compare(load_model("mlp-tiny"), ["gradient-accumulation"], TrainConfig(batch_size=8), **FAST)
    assert acc.agrees and acc.curve_gap < 1e-3 and "memory pass" in acc.verdict
    big = tp.compare(load_model("mlp-tiny"), ["larger-batch"], TrainConfig(batch_size=8), **FAST)
    assert big.new_batch == 16 and big.base_batch == 8 and len(big.new_losses) == 2  # half the steps, same samples


def test_a_pass_that_changes_what_is_learned_is_caught(monkeypatch):
    from dataclasses import replace

    wild = tp.TrainPass("lr-x300", lambda p, c: tp.Change(p, replace(c, lr=300 * c.lr), "lr x300"), "a bad idea")
    monkeypatch.setitem(tp.TRAIN_PASSES, "lr-x300", wild)
    c = tp.compare(load_model("mlp-tiny"), ["lr-x300"], TrainConfig(batch_size=8, lr=1e-3), **FAST)
    assert not c.agrees and "LOSS DIFFERS" in c.verdict


def test_passes_that_do_not_apply_say_why():
    with pytest.raises(ModelRunError, match="no 2-D convolution"):
        tp.compare(load_model("mlp-tiny"), ["channels-last"], TrainConfig(batch_size=8), **FAST)
    with pytest.raises(ModelRunError, match="unknown training pass"):
        tp.compare(load_model("mlp-tiny"), ["turbo"], TrainConfig(batch_size=8), **FAST)


def test_cli_train_passes_are_kept_and_shown_again(tmp_path):
    from optimizers.cli import main

    def cli(*a, command="train"):  # the commands as typed, in this process (the first as a real terminal runs it)
        return in_process(main, command, *a, "--runs-dir", str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "optimizers", "train", "mlp-tiny", "--passes", "fused-optimizer",
                        "--rounds", "1", "--curve-steps", "2", "--runs-dir", str(tmp_path)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "fused-optimizer" in r.stdout and "agrees" in r.stdout and "held-out loss" in r.stdout
    (kept,) = store.list_comparisons(tmp_path)
    assert kept.kind == "train" and kept.passes == ["fused-optimizer"] and f"saved as comparison {kept.id}" in r.stdout
    shown = cli(kept.id, command="results")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"train {kept.id}: mlp-tiny, fused-optimizer") and kept.training[0].verdict in \
        shown.stdout
    listed = cli(command="results")
    assert kept.id in listed.stdout and " train " in listed.stdout
    bad = cli("mlp-tiny", "--passes", "turbo")
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown training pass")
    assert "Traceback" not in bad.stderr and len(store.list_comparisons(tmp_path)) == 1


@pytest.mark.slow  # six passes, each timed side by side: ~15 s
def test_cli_train_search(tmp_path):
    s = subprocess.run([sys.executable, "-m", "optimizers", "train", "mlp-tiny", "--search", "--rounds", "1",
                        "--curve-steps", "2", "--batch-size", "8", "--runs-dir", str(tmp_path)], capture_output=True,
                       text=True, timeout=600)
    assert s.returncode == 0, s.stderr
    assert "channels-last: not applicable" in s.stdout and "larger-batch" in s.stdout


def test_a_model_with_dropout_is_compared_on_the_same_masks():
    """BERT trains with dropout: both curves start from the same seed and the held-out batch is scored in eval mode,
    so an optimizer that does the same math agrees exactly."""
    c = tp.compare(load_model("bert-tiny"), ["fused-optimizer"], TrainConfig(batch_size=8), **FAST)
    assert c.agrees and c.curve_gap < 1e-3 and c.new_heldout == pytest.approx(c.base_heldout, rel=1e-4)
