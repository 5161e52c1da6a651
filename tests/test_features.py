"""Tests for pmi_tutorial.features: batched logits equal the direct forward pass."""

from __future__ import annotations

import pytest
import torch

from pmi_tutorial.features import eval_mode, logits
from pmi_tutorial.models import build_model


@pytest.fixture(scope="module")
def x_mnist():
    return torch.randn(70, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_equals_direct_forward(x_mnist):
    model = build_model("lenet5", seed=0).eval()
    with torch.no_grad():
        direct = model(x_mnist)
    out = logits(model, x_mnist)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (70, 10)
    torch.testing.assert_close(out, direct, rtol=0, atol=1e-6)
    assert not out.requires_grad


@pytest.mark.parametrize("batch_size", [1, 7, 64, 70, 1000])
def test_batching_does_not_change_results(x_mnist, batch_size):
    model = build_model("mlp", seed=0)
    torch.testing.assert_close(logits(model, x_mnist, batch_size=batch_size), logits(model, x_mnist),
                               rtol=1e-6, atol=1e-6)


def test_eval_mode_used_and_restored():
    model = build_model("vgg19", width=0.125, seed=0)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model.train()
    model(x)  # a training step's forward pass: BatchNorm running stats move away from 0/1
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = logits(model, x, batch_size=5)  # batch statistics would differ per batch of 5
    assert model.training  # restored
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # stats untouched
    with torch.no_grad():
        ref = model.eval()(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    model.train()
    with torch.no_grad():
        train_mode_out = model(x)
    assert not torch.allclose(out, train_mode_out, atol=1e-3)


def test_mixed_modes_restored_per_module():
    model = build_model("lenet5")
    model.train()
    model.classifier.eval()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model.features.training and not model.classifier.training


def test_numpy_input_and_errors(x_mnist):
    model = build_model("mlp", seed=0)
    torch.testing.assert_close(logits(model, x_mnist.numpy()), logits(model, x_mnist))
    with pytest.raises(ValueError, match="at least one sample"):
        logits(model, torch.empty(0, 1, 28, 28))
    with pytest.raises(ValueError, match="batch_size"):
        logits(model, x_mnist, batch_size=0)
    with pytest.raises(ValueError, match="tensor or NumPy"):
        logits(model, [[1.0]])


def test_explicit_device_keeps_model_home(x_mnist):
    model = build_model("mlp", seed=0)
    out = logits(model, x_mnist, device="cpu")
    assert out.shape == (70, 10) and next(model.parameters()).device.type == "cpu"
