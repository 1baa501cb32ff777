import torch

from optimizers.validate import compare_outputs, primary_tensor


def test_identical_outputs_pass():
    x = torch.randn(4, 10)
    acc = compare_outputs(x, x.clone(), "text-classification")
    assert acc.passed and acc.max_abs_err == 0 and acc.cosine == 1.0 and acc.top1_agreement == 1.0


def test_top1_disagreement_fails_even_with_high_cosine():
    a = torch.tensor([[1.0, 1.001], [5.0, 0.0]])
    b = torch.tensor([[1.001, 1.0], [5.0, 0.0]])
    acc = compare_outputs(a, b, "text-classification")
    assert acc.cosine > 0.999 and acc.top1_agreement == 0.5 and not acc.passed


def test_shape_change_fails_with_a_note():
    acc = compare_outputs(torch.ones(2, 3), torch.ones(2, 4))
    assert not acc.passed and "shape changed" in acc.note


def test_nan_fails():
    acc = compare_outputs(torch.ones(2, 3), torch.tensor([[1.0, float("nan"), 1.0]] * 2))
    assert not acc.passed


def test_primary_tensor_finds_logits_in_hf_style_outputs():
    logits = torch.randn(2, 2)
    assert primary_tensor({"loss": None, "logits": logits}) is logits
    assert primary_tensor((logits, torch.ones(1))) is logits
