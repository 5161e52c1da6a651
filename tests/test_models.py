"""Tests for pmi_tutorial.models: parameter counts against independent counts, shapes, errors."""

from __future__ import annotations

import pytest
import torch
import torchvision

from pmi_tutorial import models
from pmi_tutorial.models import MODELS, build_model, dataset_of, input_shape_of


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


KNOWN = {"mlp": 50_890, "lenet5": 61_706, "vgg19": 20_040_522, "resnet34": 21_282_122}


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_published(name):
    assert count_parameters(build_model(name)) == KNOWN[name]


def test_mlp_lenet_counts_by_hand():
    # MLP: 784*64 + 64 weights/biases, then 64*10 + 10
    assert KNOWN["mlp"] == 784 * 64 + 64 + 64 * 10 + 10
    # LeNet-5: conv 1->6 5x5, conv 6->16 5x5, fc 16*5*5->120->84->10
    assert KNOWN["lenet5"] == (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (
        120 * 84 + 84
    ) + (84 * 10 + 10)


def test_vgg19_count_independent():
    # torchvision's ImageNet VGG-19-BN shares the 16 conv+BN layers; the CIFAR form replaces the
    # 3-layer classifier with a single Linear(512, 10).
    tv = torchvision.models.vgg19_bn(weights=None)
    assert KNOWN["vgg19"] == _n(tv.features) + 512 * 10 + 10
    # and by formula: 3x3 conv (weights + bias) + BatchNorm (2 per channel)
    c, total = 3, 0
    for out in [64, 64, 128, 128] + [256] * 4 + [512] * 8:
        total += 9 * c * out + out + 2 * out
        c = out
    assert KNOWN["vgg19"] == total + 512 * 10 + 10


def test_resnet34_count_independent():
    # torchvision's ImageNet ResNet-34: swap the 7x7 stem for 3x3 and the 1000-way fc for 10-way.
    tv = torchvision.models.resnet34(weights=None)
    cifar = _n(tv) - 3 * 64 * 49 + 3 * 64 * 9 - (512 * 1000 + 1000) + (512 * 10 + 10)
    assert KNOWN["resnet34"] == cifar


@pytest.mark.parametrize("name", MODELS)
def test_output_shapes(name):
    model = build_model(name, width=0.125 if name in ("vgg19", "resnet34") else 1.0).eval()
    x = torch.randn(3, *input_shape_of(name))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, 10) and out.dtype == torch.float32
    out7 = build_model(name, num_classes=7, width=0.125)(x)
    assert out7.shape == (3, 7)


def test_dataset_and_shapes():
    assert [dataset_of(m) for m in MODELS] == ["mnist", "mnist", "cifar10", "cifar10"]
    assert input_shape_of("mlp") == (1, 28, 28) and input_shape_of("resnet34") == (3, 32, 32)


def test_width_scales_channels():
    vgg = build_model("vgg19", width=0.125)
    convs = [m for m in vgg.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16] + [32] * 4 + [64] * 8
    assert vgg.classifier.in_features == 64
    res = build_model("resnet34", width=0.125)
    assert res.conv1.out_channels == 8 and res.linear.in_features == 64
    tiny = build_model("lenet5", width=0.01)  # rounds to at least one channel
    assert tiny.features[0].out_channels == 1 and tiny.features[3].out_channels == 1
    assert tiny(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_seed_fixes_init_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("lenet5", seed=5)
    b = build_model("lenet5", seed=5)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = build_model("lenet5", seed=6)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_errors():
    with pytest.raises(ValueError, match="'mlp', 'lenet5', 'vgg19', 'resnet34'"):
        build_model("alexnet")
    with pytest.raises(ValueError, match="unknown model"):
        dataset_of("vgg16")
    with pytest.raises(ValueError, match="width"):
        build_model("mlp", width=0)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("mlp", num_classes=1)


def test_mlp_flattens_inside():
    m = models.MLP()
    assert m(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert m(torch.randn(4, 784)).shape == (4, 10)


def test_unknown_model_names_the_known_ones(refused):
    refused(lambda: build_model("resnet50"), ValueError, ["unknown model", "'resnet34'"])
