"""The four classifiers of the paper (Section IV-A; book chapter "Reproducing Tables I-II").

* ``mlp``: 784-64-10 with ReLU (MNIST), 50,890 parameters.
* ``lenet5``: LeNet-5 on 28x28 MNIST (conv 6@5x5 pad 2, max-pool, conv 16@5x5, max-pool,
  fc 120-84-10, ReLU), 61,706 parameters.
* ``vgg19``: VGG-19 with BatchNorm in its common CIFAR-10 form (3x3 convolutions on 32x32 input,
  a single Linear(512, 10) classifier), 20,040,522 parameters.
* ``resnet34``: ResNet-34 (BasicBlock, [3, 4, 6, 3]) in its CIFAR-10 form (3x3 stem, no
  ImageNet max-pool), 21,282,122 parameters.

``width`` multiplies every convolution's channel count (and the MLP's hidden units); the quick
profile uses it to shrink the CIFAR models.  ``width=1.0`` is the published architecture.
The models return logits (no softmax): the features PMI works on.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _validate as V

MODELS = ("mlp", "lenet5", "vgg19", "resnet34")
_DATASET = {"mlp": "mnist", "lenet5": "mnist", "vgg19": "cifar10", "resnet34": "cifar10"}
_INPUT_SHAPE = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}

VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def check_model_name(name) -> str:
    """``name`` must be one of :data:`MODELS`."""
    return V.check_choice(name, MODELS, "model")


def dataset_of(name) -> str:
    """The dataset a model is trained on in the paper: ``"mnist"`` or ``"cifar10"``."""
    return _DATASET[check_model_name(name)]


def input_shape_of(name) -> tuple:
    """The input shape (C, H, W) of one image for model ``name``."""
    return _INPUT_SHAPE[dataset_of(name)]


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1."""
    return max(1, int(round(channels * width)))


class MLP(nn.Module):
    """784-64-10 with ReLU; flattens its input."""

    def __init__(self, num_classes=10, width=1.0, in_features=784, hidden=64):
        super().__init__()
        h = scaled(hidden, width)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, h), nn.ReLU(inplace=True), nn.Linear(h, num_classes)
        )

    def forward(self, x):
        """Logits of a batch of images."""
        return self.net(x)


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 inputs (the first convolution pads by 2, as for the original 32x32)."""

    def __init__(self, num_classes=10, width=1.0, in_channels=1):
        super().__init__()
        c1, c2 = scaled(6, width), scaled(16, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        """Logits of a batch of images."""
        return self.classifier(self.features(x))


class VGG(nn.Module):
    """VGG with BatchNorm, CIFAR form: 3x3 convs, 5 max-pools (32 -> 1), one linear layer."""

    def __init__(self, cfg=VGG19_CFG, num_classes=10, width=1.0, in_channels=3):
        super().__init__()
        layers, c = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = scaled(v, width)
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        """Logits of a batch of images."""
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """ResNet's two-convolution residual block (with a projection when the shape changes)."""
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        """The block's output: relu(F(x) + shortcut(x))."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet, CIFAR form: 3x3 stem with 64 channels, four stages, global average pool."""

    def __init__(self, blocks=(3, 4, 6, 3), num_classes=10, width=1.0, in_channels=3):
        super().__init__()
        c = scaled(64, width)
        self.conv1 = nn.Conv2d(in_channels, c, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks)):
            planes = scaled(planes, width)
            layer = []
            for j in range(n):
                layer.append(BasicBlock(c, planes, stride=(1 if i == 0 or j > 0 else 2)))
                c = planes
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x):
        """Logits of a batch of images."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(self.pool(out), 1))


def build_model(name, num_classes=10, width=1.0, seed=None) -> nn.Module:
    """A fresh model ``name`` (one of :data:`MODELS`) returning logits for ``num_classes`` classes.

    ``width`` multiplies every convolution's channel count (at least 1 channel).  ``seed``, when
    given, fixes the initial weights without touching the global random state.
    """
    name = check_model_name(name)
    num_classes = V.check_scalar(num_classes, "num_classes", int, min_val=2)
    width = V.check_scalar(width, "width", float, min_val=0.0, include_boundaries="neither",
                           hint="a positive number such as 1.0 or 0.125")
    ctor = {
        "mlp": lambda: MLP(num_classes, width),
        "lenet5": lambda: LeNet5(num_classes, width),
        "vgg19": lambda: VGG(VGG19_CFG, num_classes, width),
        "resnet34": lambda: ResNet((3, 4, 6, 3), num_classes, width),
    }[name]
    if seed is None:
        model = ctor()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = ctor()
    # What rebuilds it: read by pmi_tutorial.checkpoint.save_checkpoint.
    model.arch = {"model": name, "num_classes": num_classes, "width": width}
    return model
